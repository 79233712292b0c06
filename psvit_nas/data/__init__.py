"""Data: datasets decoded at the space's stored size, the decoded-image cache, batches and batch augmentation."""
from .augment import (Augment, BatchAugment, batch_mixer, eval_batch, normalize, per_image_transform, random_crop,
                      random_erasing)
from .cache import CacheConfig, CachedImages, default_cache_dir, load_images
from .datasets import decode_transform, holdout_split, load_split, num_classes, stored_size
from .loader import EvalBatches, TrainLoader, default_workers

__all__ = ["Augment", "BatchAugment", "CacheConfig", "CachedImages", "EvalBatches", "TrainLoader", "batch_mixer",
           "decode_transform", "default_cache_dir", "default_workers", "eval_batch", "holdout_split", "load_images",
           "load_split", "normalize", "num_classes", "per_image_transform", "random_crop",
           "random_erasing", "stored_size"]
