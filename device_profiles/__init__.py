"""Device profiles shipped with crossbar: one TOML file per technology, each with its sources.

Installed as the package ``crossbar.device_profiles``; read them with
:func:`crossbar.profiles.load_profile`.
"""
