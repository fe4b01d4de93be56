"""Settings: one TOML file -> frozen dataclasses (schema), the field checker, the augmentation section."""
