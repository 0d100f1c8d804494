from setuptools import find_packages, setup

setup(
    name="tf-melgan",
    version="0.1.0",
    description="MelGAN vocoder (Kumar et al., NeurIPS 2019) in TensorFlow 2 / Keras 3: "
                "paper-faithful training, SavedModel and TFLite export",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["tf_melgan", "tf_melgan.*"]),
    # csrc: built on first use (tf_melgan/native.py); pretrained: the shipped vocoders
    package_data={"tf_melgan": ["csrc/*.cc", "pretrained/*/*", "pretrained/*/*/*"]},
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3",
        "numpy>=1.26",
        "librosa>=0.10",
        "soundfile>=0.12",
        "absl-py>=1.4",
        "PyYAML>=6.0",
        "tensorboard>=2.16",  # tf.summary needs it; TF 2.21 no longer pulls it in
        "ai-edge-litert>=1.2",  # tf-melgan-convert checks what it writes with LiteRT
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "ai-edge-litert>=2", "pesq>=0.0.4", "pystoi>=0.4"],
        "eval": ["pesq>=0.0.4", "pystoi>=0.4", "matplotlib>=3.7", "speechmos>=0.0.1",
                 "onnxruntime>=1.16"],  # benchmarks/quality.py
        "litert": ["ai-edge-litert>=1.2"],  # the converter's checks, .tflite synthesis
        "torch": ["torch>=2.1"],  # CPU build here: pip install torch==2.13.0
    },
    entry_points={"console_scripts": [
        "tf-melgan-train=tf_melgan.train:cli",
        "tf-melgan-import-pytorch=tf_melgan.import_pytorch:cli",
        "tf-melgan-export=tf_melgan.export:cli",
        "tf-melgan-synthesize=tf_melgan.synthesize:cli",
        "tf-melgan-preprocess=tf_melgan.preprocess:cli",
        "tf-melgan-convert=tf_melgan.convert:cli",
        "tf-melgan-smoke-test=tf_melgan.smoke_test:cli",
    ]},
)
