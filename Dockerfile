# MNIST trainer image.
# Base: official PyTorch CUDA runtime image; torch 2.5.1 + torchvision are
# already inside, so they are NOT reinstalled here (requirements.txt is not
# installed wholesale for that reason: only the missing packages below are).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

# Packages from requirements.txt that the base image lacks (pytest is for CI only).
RUN pip install --no-cache-dir \
        torchsummary==1.5.1 \
        tqdm==4.67.1 \
        matplotlib==3.9.4 \
    && useradd --create-home --uid 1000 --shell /bin/bash app \
    && mkdir -p /data /out \
    && chown app:app /data /out

WORKDIR /app
COPY model.py train.py ./

# Numeric uid:gid (hadolint DL3066); same ids as the 'app' user created above.
USER 1000:1000
VOLUME ["/data", "/out"]

# Extra arguments to `docker run IMAGE ...` are appended after these defaults;
# argparse keeps the last occurrence, so --data-dir/--out-dir can still be overridden.
ENTRYPOINT ["python", "train.py", "--data-dir", "/data", "--out-dir", "/out"]
CMD []
