"""Training runs driven by test_distributed.py and test_fault_tolerance.py in fresh processes.

Usage: python tests/training_check.py MODE OUT.npz [BACKUP_DIR]
  MODE: single | mirrored (TensorFlow, 2 logical CPUs) | data_parallel (JAX, 2 host devices)
        | resume (single device with BackupAndRestore in BACKUP_DIR; SIGKILLs itself in epoch 2
          when KILL_IN_EPOCH=2 is set)

Weights and data come from NumPy with fixed seeds, so every mode starts from the same model.
"""

import os
import signal
import sys

MODE = sys.argv[1]
if MODE == "data_parallel":
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_vit  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

EPOCHS = 3


def data():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (32, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 32)


def model():
    net = keras_vit.ViTForImageClassification(tiny_config())
    rng = np.random.default_rng(1)
    net.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in net.get_weights()])
    net.compile(keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return net


class KillInEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.kill_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current_epoch == self.kill_epoch and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch


def main(out, backup_dir=None):
    x, y = data()
    epochs, callbacks = 1, []
    if MODE == "mirrored":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            net = model()
    elif MODE == "data_parallel":
        import jax

        devices = jax.devices()
        assert len(devices) == 2, devices
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        net = model()
    else:
        net = model()
    if MODE == "resume":
        epochs = EPOCHS
        callbacks = [keras.callbacks.BackupAndRestore(backup_dir)]
        if os.environ.get("KILL_IN_EPOCH"):
            callbacks.append(KillInEpoch(int(os.environ["KILL_IN_EPOCH"])))
    history = net.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    np.savez(out, loss=np.array(history.history["loss"]), *net.get_weights())


if __name__ == "__main__":
    main(*sys.argv[2:])
