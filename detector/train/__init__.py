"""Fine-tuning: pretrained weights recovered offline, data and augmentation, prefetching loaders, freezing,
task-aligned assignment, the detection loss, EMA, validation, checkpoints; the loop is ``finetune.py``."""
