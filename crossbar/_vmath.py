"""Branch-free elementary functions that LLVM vectorizes inside numba loops.

``math.exp``, ``math.log``, ``math.sin`` and ``math.cos`` compile to calls into the C library, one
element at a time, and a call stops the loop vectorizer. The functions here are written with plain
arithmetic, bit casts and explicitly fused multiply-adds, so a loop over an array that calls them
becomes AVX2/AVX-512 code. Every operation is IEEE-754 with round-to-nearest (no ``fastmath``; the
fused multiply-add is ``llvm.fma``, correctly rounded on every target), so results are the same bit
for bit on every machine, vectorized or not.

Accuracy (tested in ``tests/crossbar/test_vmath.py``): :func:`exp_f64` within 1 ulp of ``math.exp``
on the whole float64 range, subnormal results included; :func:`exp_f32` and :func:`log_f32` within 2
float32 ulp of the float64 result (measured: 1.03 and 1.13); :func:`sincos_quarter_f32` within 1.5e-7.

References
----------
The float32 sin/cos polynomials are those of the Cephes library's ``sinf.c``/``cosf.c`` (S. L. Moshier,
1985-1995); exp uses the Cody-Waite range reduction of W. J. Cody and W. Waite, *Software Manual for
the Elementary Functions*, Prentice-Hall, 1980 (the float32 split of ln 2 is Cephes ``expf``'s); the
log polynomial is a weighted least-squares fit made for this module (coefficients in the source).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from crossbar._jit import inline_kernel

__all__ = ["abs_bits", "exp_f32", "exp_f64", "float_from_abs_bits", "like", "vexp", "f32_from_bits", "f64_from_bits", "fma32", "fma64", "log_f32", "sincos_quarter_f32"]


# ----------------------------------------------------------------------------- intrinsics
@intrinsic
def f32_from_bits(typingctx, bits):  # type: ignore[no-untyped-def]
    """The float32 whose IEEE-754 bit pattern is the low 32 bits of an integer."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        v = args[0]
        if sig.args[0].bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif sig.args[0].bitwidth < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def bits_from_f32(typingctx, x):  # type: ignore[no-untyped-def]
    """The IEEE-754 bit pattern of a float32, as int64 (sign-extended from int32)."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.sext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(x), codegen


@intrinsic
def f64_from_bits(typingctx, bits):  # type: ignore[no-untyped-def]
    """The float64 whose IEEE-754 bit pattern is a 64-bit integer."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 64:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(bits), codegen


@intrinsic
def abs_bits(typingctx, x):  # type: ignore[no-untyped-def]
    """The bit pattern of ``|x|`` for float32 or float64 ``x``, as a non-negative int64. For finite or
    infinite values it orders like ``|x|``, so a maximum over it is an integer reduction, which
    vectorizes (a float maximum does not, without fastmath, because of NaN ordering)."""
    if x not in (types.float32, types.float64):
        return None
    width = x.bitwidth

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ity = ir.IntType(width)
        b = builder.and_(builder.bitcast(args[0], ity), ir.Constant(ity, (1 << (width - 1)) - 1))
        return builder.zext(b, ir.IntType(64)) if width < 64 else b

    return types.int64(x), codegen


@intrinsic
def float_from_abs_bits(typingctx, bits, like):  # type: ignore[no-untyped-def]
    """Inverse of :func:`abs_bits`: the float of ``like``'s type whose bit pattern is ``bits``."""
    if not isinstance(bits, types.Integer) or like not in (types.float32, types.float64):
        return None
    width = like.bitwidth

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        b = args[0]
        if width < 64:
            b = builder.trunc(b, ir.IntType(width))
        return builder.bitcast(b, context.get_value_type(like))

    return like(bits, like), codegen


def _fma(fp: types.Float):  # type: ignore[no-untyped-def]
    def typer(typingctx, a, b, c):  # type: ignore[no-untyped-def]
        if a != fp or b != fp or c != fp:
            return None

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            lty = context.get_value_type(fp)
            fn = builder.module.declare_intrinsic("llvm.fma", [lty], ir.FunctionType(lty, [lty, lty, lty]))
            return builder.call(fn, args)

        return fp(a, b, c), codegen

    return typer


fma32 = intrinsic(_fma(types.float32))
fma32.__doc__ = "``a * b + c`` for float32 with one rounding (``llvm.fma``)."
fma64 = intrinsic(_fma(types.float64))
fma64.__doc__ = "``a * b + c`` for float64 with one rounding (``llvm.fma``)."


@intrinsic
def like(typingctx, value, arr):  # type: ignore[no-untyped-def]
    """``value`` converted to the dtype of array ``arr`` (a typed constant for dtype-generic kernels:
    a float64 literal would silently promote float32 arithmetic to float64)."""
    if not isinstance(arr, types.Array) or not isinstance(value, (types.Number, types.Boolean)):
        return None
    dt = arr.dtype

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return context.cast(builder, args[0], sig.args[0], dt)

    return dt(value, arr), codegen


# ----------------------------------------------------------------------------- exp (float64)
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm: ln2 with the low 32 bits zero, so n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_EXP_MIN = -745.5  # below: exp underflows to 0
_EXP_MAX = 709.782712893384  # log(DBL_MAX): above, exp overflows to inf
# Taylor coefficients 1/k!, k = 2..13, for exp(r) on |r| <= ln2/2 (truncation error < 4e-18)
_E2, _E3, _E4, _E5 = 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120
_E6, _E7, _E8, _E9 = 1.0 / 720, 1.0 / 5040, 1.0 / 40320, 1.0 / 362880
_E10, _E11, _E12, _E13 = 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800


@inline_kernel
def exp_f64(x: float) -> float:
    """``e^x`` in float64 without branches: Cody-Waite reduction ``x = n ln2 + r``, a degree-13
    polynomial for ``e^r`` and two exact power-of-two scalings (so subnormal results round once).
    NaN gives NaN; results beyond the finite range are 0 or inf."""
    xc = min(max(x, _EXP_MIN), _EXP_MAX)
    n = np.rint(xc * _LOG2E)
    r = fma64(-n, _LN2_HI, xc)
    r = fma64(-n, _LN2_LO, r)
    p = fma64(_E13, r, _E12)
    p = fma64(p, r, _E11)
    p = fma64(p, r, _E10)
    p = fma64(p, r, _E9)
    p = fma64(p, r, _E8)
    p = fma64(p, r, _E7)
    p = fma64(p, r, _E6)
    p = fma64(p, r, _E5)
    p = fma64(p, r, _E4)
    p = fma64(p, r, _E3)
    p = fma64(p, r, _E2)
    # e^r = 1 + r + r^2 p; the small part first, the 1 last
    er = 1.0 + fma64(r * r, p, r)
    k = np.int64(n)
    k1 = k >> 1
    k2 = k - k1
    y = er * f64_from_bits((k1 + 1023) << 52) * f64_from_bits((k2 + 1023) << 52)
    y = y if x <= _EXP_MAX else math.inf
    return y if x == x else x


_F = np.float32
_LOG2E_F = _F(1.4426950408889634)
_LN2_HI_E = _F(0.693359375)  # Cephes expf: 355/512, exact in few bits so n * _LN2_HI_E is exact
_LN2_LO_E = _F(-2.12194440e-4)
_EXPF_MIN = _F(-104.0)  # below: expf underflows to 0
_EXPF_MAX = _F(88.72283172607422)  # largest float32 x with finite expf(x)
_EF2, _EF3, _EF4, _EF5, _EF6, _EF7 = _F(1.0 / 2), _F(1.0 / 6), _F(1.0 / 24), _F(1.0 / 120), _F(1.0 / 720), _F(1.0 / 5040)


@inline_kernel
def exp_f32(x: np.float32) -> np.float32:
    """``e^x`` in float32 without branches, as :func:`exp_f64` with a degree-7 polynomial."""
    xc = min(max(x, _EXPF_MIN), _EXPF_MAX)
    n = np.rint(xc * _LOG2E_F)
    r = fma32(-n, _LN2_HI_E, xc)
    r = fma32(-n, _LN2_LO_E, r)
    p = fma32(_EF7, r, _EF6)
    p = fma32(p, r, _EF5)
    p = fma32(p, r, _EF4)
    p = fma32(p, r, _EF3)
    p = fma32(p, r, _EF2)
    er = _F(1.0) + fma32(r * r, p, r)
    k = np.int64(n)
    k1 = k >> 1
    k2 = k - k1
    y = er * f32_from_bits((k1 + 127) << 23) * f32_from_bits((k2 + 127) << 23)
    y = y if x <= _EXPF_MAX else _F(math.inf)
    return y if x == x else x


def vexp(x):  # type: ignore[no-untyped-def]
    """``e^x`` in the float type of ``x`` (:func:`exp_f32` or :func:`exp_f64`); for numba kernels."""
    raise NotImplementedError("vexp is only callable from numba kernels")


@overload(vexp, inline="always")
def _vexp_impl(x):  # type: ignore[no-untyped-def]
    if x == types.float32:
        return lambda x: exp_f32(x)
    if x == types.float64:
        return lambda x: exp_f64(x)
    return None


# ----------------------------------------------------------------------------- log and sin/cos (float32)
# log(1 + f) = f + f^2 P(f) on f in [sqrt(1/2) - 1, sqrt(2) - 1]: P of degree 7, a weighted least-squares
# fit on Chebyshev nodes (relative error of log(1 + f) below 3.6e-8 before float32 rounding)
_P0 = _F(-0.5)
_P1 = _F(0.33333972)
_P2 = _F(-0.2500103)
_P3 = _F(0.1996066)
_P4 = _F(-0.16586828)
_P5 = _F(0.14949334)
_P6 = _F(-0.14203793)
_P7 = _F(0.08518553)
_SQRT_HALF_BITS = 0x3F3504F3  # float32 sqrt(1/2)


@inline_kernel
def log_f32(u: np.float32) -> np.float32:
    """Natural log of a positive, finite, normal float32 (the caller guarantees it; no checks).

    ``u = 2^k m`` with ``m`` in [sqrt(1/2), sqrt(2)) read from the bits, then ``log u = k ln2 +
    log(1 + f)``, ``f = m - 1``, with a polynomial and no division.
    """
    ib = bits_from_f32(u)
    k = (ib - _SQRT_HALF_BITS) >> 23
    f = f32_from_bits(ib - (k << 23)) - _F(1.0)
    p = fma32(_P7, f, _P6)
    p = fma32(p, f, _P5)
    p = fma32(p, f, _P4)
    p = fma32(p, f, _P3)
    p = fma32(p, f, _P2)
    p = fma32(p, f, _P1)
    p = fma32(p, f, _P0)
    dk = _F(k)
    return fma32(dk, _LN2_HI_E, fma32(dk, _LN2_LO_E, fma32(f * f, p, f)))


# sin(t) and cos(t) on |t| <= pi/4: the single-precision polynomials of the Cephes library (S. L.
# Moshier, sinf.c / cosf.c), degree 7 and 8; tests/crossbar/test_rng.py checks the error
_S1 = _F(-1.6666654611e-1)
_S2 = _F(8.3321608736e-3)
_S3 = _F(-1.9515295891e-4)
_C1 = _F(-0.5)
_C2 = _F(4.166664568298827e-2)
_C3 = _F(-1.388731625493765e-3)
_C4 = _F(2.443315711809948e-5)


@inline_kernel
def sincos_quarter_f32(t: np.float32) -> tuple[np.float32, np.float32]:
    """``(sin t, cos t)`` for float32 ``|t| <= pi/4`` (polynomials; no range reduction)."""
    z = t * t
    sn = fma32(t * z, fma32(z, fma32(z, _S3, _S2), _S1), t)
    cs = fma32(z, fma32(z, fma32(z, fma32(z, _C4, _C3), _C2), _C1), _F(1.0))
    return sn, cs
