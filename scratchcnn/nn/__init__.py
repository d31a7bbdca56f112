"""The network: layers, Sequential, the execution plan, losses, optimizers, presets."""
