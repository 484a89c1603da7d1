# syntax=docker/dockerfile:1
# sessiond: multi-stage build, production dependencies only, non-root, HEALTHCHECK on /healthz.
#   docker build -t sessiond . && docker run -p 8080:8080 -e REDIS_URL=redis://redis:6379 sessiond
# (compose.yaml runs it with Redis in one command.)

# Build stage: compile TypeScript to JavaScript with the dev toolchain.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY gen ./gen
RUN npm run build

# Dependencies stage: production dependencies only, without the npm cache.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Runtime stage: node, production node_modules and compiled output, as the unprivileged "node" user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
# A larger young generation: ~10-15 % less CPU per RPC (fewer scavenges) for more resident memory; see bench/RESULTS.md.
# (NODE_OPTIONS rather than a CMD argument, so the CMD stays the plain command the production-start test runs.)
ENV NODE_OPTIONS=--max-semi-space-size=64
WORKDIR /app
COPY --chown=root:root package.json ./
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
USER node
EXPOSE 8080
# Liveness: the process answers HTTP. (Readiness, /readyz, is for orchestrators: it turns 503 while Redis is unreachable.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The exact command the production-start test runs: plain node, no npm in between, so SIGTERM reaches the process.
CMD ["node", "dist/src/main.js"]
