# MNIST trainer image: the Python minor version (3.11) and the exact packages (constraints.txt) that CI
# runs the tests with. PyPI's torch wheel bundles CUDA: `docker run --gpus all` trains on the GPU, and
# without a GPU the same image trains on the CPU.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt \
    && useradd --create-home --uid 1000 --shell /bin/bash app \
    && mkdir -p /data /out \
    && chown app:app /data /out

COPY checkpoint.py errors.py model.py mnist.py plots.py rundir.py train.py ./

# Numeric uid:gid (hadolint DL3066); same ids as the 'app' user created above.
USER 1000:1000
VOLUME ["/data", "/out"]

# python is PID 1 here: train.py handles SIGTERM itself, so `docker stop` is a clean stop (exit 143).
# Extra arguments to `docker run IMAGE ...` are appended after these defaults;
# argparse keeps the last occurrence, so --data-dir/--out-dir can still be overridden.
ENTRYPOINT ["python", "train.py", "--data-dir", "/data", "--out-dir", "/out"]
CMD []
