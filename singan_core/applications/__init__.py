"""The SinGAN applications, one module each."""
