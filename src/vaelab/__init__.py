"""vaelab."""
