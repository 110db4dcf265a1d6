"""The GroupNorm UNet without DP: the reference DP-SGD's federations are measured against."""
