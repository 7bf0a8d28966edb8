# One image for the bot (`supportbot serve`), the Rasa action server (`supportbot actions`)
# and training jobs (`supportbot train run`). It runs the same scripts/setup.sh as the README,
# so what CI tests is what the image installs.
#
#   docker build -t supportbot .
#   docker run --env-file slack.env -v supportbot-state:/app/var -p 3000:3000 supportbot

# --- builder: compile llama-cpp-python once (PyPI ships only its source) -------------------
FROM python:3.11-slim-bookworm AS builder
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
RUN pip wheel --no-deps --wheel-dir /wheels llama-cpp-python==0.3.36 \
    || echo "llama-cpp-python did not build: the image will serve with the Hugging Face backend"

# --- runtime --------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends make libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 supportbot
WORKDIR /app
COPY --from=builder /wheels /wheels
COPY pyproject.toml README.md Makefile config.toml ./
COPY scripts ./scripts
COPY bot ./bot
COPY training ./training
COPY knowledge ./knowledge
COPY data ./data
ENV VENV=/opt/venv \
    PIP_FIND_LINKS=/wheels \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    SUPPORTBOT_MODELS__CACHE_DIR=/opt/supportbot-models
RUN bash scripts/setup.sh && rm -rf /root/.cache/pip
# Bake the converted base model into the image: nothing is downloaded or converted at start.
RUN supportbot prepare && chown -R supportbot /app
USER supportbot
# 3000: Slack HTTP mode. 5055: `supportbot actions` (the Rasa action server) listens on 127.0.0.1 by
# default; in a container run it with SUPPORTBOT_RASA__HOST=0.0.0.0 and SUPPORTBOT_RASA_TOKEN set
# (docs/operations.md#rasa-action-server).
EXPOSE 3000 5055
VOLUME ["/app/var"]
CMD ["supportbot", "serve"]
