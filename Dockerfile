# syntax=docker/dockerfile:1
# sessiond: multi-stage build, production dependencies only, non-root, HEALTHCHECK without a Node process.
#   docker build --build-arg SOURCE_REVISION=$(git rev-parse --short HEAD) -t sessiond .
# Running it (with Redis): README "Docker"; compose.yaml runs both in one command.

# Every stage on the same Node LTS image, pinned by digest (node:24-bookworm-slim, Node 24.18.0 when pinned):
# a rebuild gets the same bytes. To move on: `docker buildx imagetools inspect node:24-bookworm-slim` and put the
# new index digest here (CI pulls exactly this reference, so a wrong digest fails the build).
ARG NODE_IMAGE=node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d

# Build stage: compile TypeScript to JavaScript with the dev toolchain.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY gen ./gen
RUN npm run build

# Dependencies stage: production dependencies only, without the npm cache.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci's postinstall applies patches/ (patch-package; README "Libraries").
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Runtime stage: node, production node_modules and compiled output, as the unprivileged "node" user (uid 1000).
FROM ${NODE_IMAGE}
# The source revision, shown by --version and in the sessiond_build_info metric.
ARG SOURCE_REVISION=unknown
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 SOURCE_REVISION=${SOURCE_REVISION}
# A larger young generation: ~10-15 % less CPU per RPC (fewer scavenges) for more resident memory; see bench/RESULTS.md.
# (NODE_OPTIONS rather than a CMD argument, so the CMD stays the plain command the production-start test runs.)
ENV NODE_OPTIONS=--max-semi-space-size=64
WORKDIR /app
COPY --chown=root:root package.json ./
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/sessiond-healthcheck
USER node
EXPOSE 8080
# Liveness: GET /healthz from a shell script (bash /dev/tcp), no Node process per probe.
# (Readiness, /readyz, is for orchestrators: it turns 503 while Redis is unreachable.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/sessiond-healthcheck"]
# The exact command the production-start test runs: plain node, no npm in between, so SIGTERM reaches the process.
CMD ["node", "dist/src/main.js"]
