# The llmfleet image: controller workers, router + fleet simulator, replay and the CLI.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY solvers ./solvers
COPY controller ./controller
RUN pip install --no-cache-dir . && useradd --system --uid 10001 llmfleet
USER llmfleet
EXPOSE 6066
ENTRYPOINT ["llmfleet"]
CMD ["worker"]
