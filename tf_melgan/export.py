"""SavedModel export: python -m tf_melgan.export --model_dir DIR --output OUT [--which best].

The export has one signature, `serving_default`: input `mel` float32 [batch, frames, n_mels]
(the model's log-mel, batch and frames dynamic, frames >= 4) -> {'audio': float32
[batch, frames * hop]}. Weight norm is folded. Its manifest (audio config, mel recipe,
architecture, receptive field, which generator) travels with it as the asset
`OUT/assets/tf_melgan.json`. The export is reloaded and compared with the Keras model
(also through TF Serving's loader) before it is moved into place.
Python: tf_melgan.deploy.saved_model.export_saved_model.
"""

from __future__ import annotations

import os
import sys

from tf_melgan.cli import (DEBUG_HELP, debug_requested, new_flags, parse_flags, quiet_tensorflow,
                           report)
from tf_melgan.deploy.manifest import INPUT_NAME, OUTPUT_NAME, SIGNATURE
from tf_melgan.errors import TfMelganError
from tf_melgan.pretrained import no_such_model, resolve, shipped_help


def _define_flags():
    from absl import flags

    fv = new_flags()
    flags.DEFINE_string("model_dir", None, "Model dir written by tf_melgan.train, or "
                        f"{shipped_help()}.", flag_values=fv)
    flags.DEFINE_string("output", None, "SavedModel directory to write.", flag_values=fv)
    flags.DEFINE_enum("which", "best", ["best", "latest"],
                      "best: the best generator (lowest validation log-mel L1); "
                      "latest: the latest checkpoint.", flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --output.", flag_values=fv)
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)
    return fv


def main(argv) -> int:
    """Runs the CLI on argv (argv[0] is the program); returns the exit status. Errors are
    one line on stderr."""
    fv = _define_flags()
    status = parse_flags(fv, argv, __doc__, required=("model_dir", "output"))
    if status is not None:
        return status
    debug = debug_requested(fv.debug)
    quiet_tensorflow(debug)
    # loads TensorFlow: after quiet_tensorflow(), and never for --help
    from tf_melgan.deploy.saved_model import export_with_report

    model_dir = resolve(fv.model_dir)
    if not os.path.exists(model_dir):
        print(f"error: {no_such_model(model_dir)}", file=sys.stderr)
        return 1
    if not os.path.isdir(model_dir):
        print(f"error: {model_dir}: not a model dir (export takes what train writes)",
              file=sys.stderr)
        return 1
    try:
        path, diff, (_, source) = export_with_report(model_dir, fv.output, None, fv.which,
                                                     fv.overwrite)
    except (TfMelganError, OSError) as e:  # a model dir, config or export refusal
        return report(e, debug)
    print(f"generator: {source.describe()} of {model_dir}")
    print(f"exported {model_dir} ({source.which}) to {path}; signature '{SIGNATURE}': "
          f"{INPUT_NAME} [batch, frames, n_mels] -> {OUTPUT_NAME} [batch, samples]; "
          f"max |SavedModel - Keras| = {diff:.2g}")
    return 0


def cli():
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    cli()
