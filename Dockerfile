# skiptune-search on a CUDA GPU. Build:  docker build -t skiptune .
# Run:    docker run --gpus all -v skiptune-data:/data skiptune --model /data/ckpt.pt --nfe 9
# With PostgreSQL for several workers: add  --db postgresql+psycopg://user@host/db
# Hub ids and URLs are downloaded once into the /data volume; offline (nothing fetched, only
# what the volume's caches hold):  docker run -e SKIPTUNE_OFFLINE=1 -e HF_HUB_OFFLINE=1 ...
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# Downloads on; their caches on the volume, so that they outlive the container.
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/data/huggingface \
    SKIPTUNE_CACHE_DIR=/data/cache \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# The PyPI torch 2.14.1 wheels for Linux x86_64 are CUDA builds; torchvision is its matched pair.
COPY constraints.txt /src/constraints.txt
RUN pip install -c /src/constraints.txt torch torchvision

COPY pyproject.toml README.md /src/
COPY skiptune /src/skiptune
RUN pip install -c /src/constraints.txt "/src[diffusers,postgres,plot]"

RUN useradd --create-home --uid 10001 skiptune && mkdir /data && chown skiptune /data
USER skiptune
WORKDIR /data
VOLUME ["/data"]
# The study database defaults to ./skiptune.db, that is /data/skiptune.db on the volume.
ENTRYPOINT ["skiptune-search"]
CMD ["--help"]
