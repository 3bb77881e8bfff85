"""Built-in declarative field maps (TOML), shipped as package data."""
