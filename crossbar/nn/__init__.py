"""The torch bridge: chip-in-the-loop layers and the differentiable surrogate of the chip."""
