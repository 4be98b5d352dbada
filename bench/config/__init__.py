"""Stage 1, configuration: typed dataclasses (schema), presets, YAML config files, and the one resolver."""
