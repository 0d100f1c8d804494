"""The tf.distribute strategy and the precision policy a training runs under."""

from __future__ import annotations

import json
import os


def make_strategy(name: str, cpu_replicas: int = 0):
    """Picks a tf.distribute strategy; must run before any other TensorFlow work."""
    import tensorflow as tf
    if cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    workers = len(tf_config.get("cluster", {}).get("worker", []))
    if name == "auto":
        if workers > 1:
            name = "multi_worker"
        elif tf.config.list_physical_devices("GPU") or cpu_replicas:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = None
        if cpu_replicas and not tf.config.list_physical_devices("GPU"):
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def set_precision(mode: str):
    import keras
    import tensorflow as tf
    if mode == "auto":
        mode = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy("float32" if mode == "none" else mode)
    return mode
