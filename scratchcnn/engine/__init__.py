"""The engine: the training loop, schedules, augmentation, inference helpers, profiling, explanations."""
