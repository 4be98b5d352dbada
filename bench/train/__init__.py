"""Stage 3, training: the loop that trains a student with a method, and the teacher (trained here or loaded); takes a config, data and models, returns weights and a per-epoch history."""
