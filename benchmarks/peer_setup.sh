#!/usr/bin/env bash
# The peer that `make bench` times beside us: pymtcnn on ONNX Runtime (CPU), in
# a virtual environment of its own, with its ONNX models converted locally from
# OpenFace 2.2's network files (academic licence: they stay outside the project).
#
#     benchmarks/peer_setup.sh [OPENFACE_MODEL_FOLDER]
#
# The folder defaults to $MTCNN_SHARED/models/openface-2.2.0 (else
# ../shared/models/openface-2.2.0). Everything goes to $MTCNN_PEER (default
# ${TMPDIR:-/tmp}/pymtcnn-peer): the venv there, the models in its models/.
# Needs a package registry for pip; downloads nothing else (pymtcnn converts
# the files given, checked against its own checksums).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
models="${1:-${MTCNN_SHARED:-$here/../shared}/models/openface-2.2.0}"
peer="${MTCNN_PEER:-${TMPDIR:-/tmp}/pymtcnn-peer}"

for net in PNet RNet ONet; do
  [ -f "$models/$net.dat" ] || { echo "peer_setup: no $net.dat in $models" >&2; exit 1; }
done
python3 -m venv "$peer"
"$peer/bin/pip" install --quiet --upgrade pip
"$peer/bin/pip" install --quiet "pymtcnn[onnx]" opencv-python-headless
originals="$peer/models/2.2.0/originals/lib/local/LandmarkDetector/model/mtcnn_detector"
mkdir -p "$originals"
cp "$models"/{PNet,RNet,ONet}.dat "$originals/"
OPENFACE_MODELS_DIR="$peer/models" "$peer/bin/python" -c \
  "import pymtcnn.models as m; m.ensure_models(accept_license=True)"
"$peer/bin/python" -c "import pymtcnn, onnxruntime; print('peer ready:', '$peer', 'pymtcnn', \
pymtcnn.__version__, 'onnxruntime', onnxruntime.__version__)"
