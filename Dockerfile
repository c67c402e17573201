# keygate gateway image.
#
#   docker build -t keygate:dev .
#   docker run --rm -p 8080:8080 --read-only --tmpfs /tmp --env-file gateway.env keygate:dev
#
# Stages: `deps` installs production dependencies only, `build` compiles the webpack bundles with
# the dev dependencies, `runtime` is distroless (no shell, no package manager) running as a
# non-root user with tini as PID 1. Nothing secret is ever copied or set here: configuration and
# keys arrive at run time through the environment and Secret Manager (see docs/runbook.md).
#
# Base images are pinned by version tag; Renovate (renovate.json) bumps them and pins digests.

# The whole image reference in one ARG, so Renovate can bump and digest-pin it in place (it cannot
# when the tag is split between an ARG and the FROM line).
ARG NODE_IMAGE=node:22.20.0-bookworm-slim

# ---- production dependencies ------------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: no production dependency needs one (checked by test/deploy/image.spec.ts,
# which boots the bundle against a production-only node_modules).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- build ------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY nest-cli.json tsconfig.json tsconfig.build.json ./
COPY apps ./apps
COPY libs ./libs
RUN npm run build

# ---- init: a static tini, so PID 1 forwards SIGTERM and reaps zombies --------------------------
FROM debian:bookworm-slim AS init
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# ---- runtime ----------------------------------------------------------------------------------
FROM gcr.io/distroless/nodejs22-debian12:nonroot AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    PORT=8080
COPY --from=init /usr/bin/tini-static /usr/local/bin/tini
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# distroless `nonroot` is uid/gid 65532; the files above stay owned by root and read-only to it.
USER 65532:65532
EXPOSE 8080
# tini forwards SIGTERM to node, which drains for API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS.
ENTRYPOINT ["/usr/local/bin/tini", "--", "/nodejs/bin/node"]
# Node sizes V8's young generation from the heap limit, which it derives from the container's
# memory limit: under k8s/base's 512Mi that is 1 MiB per semi-space (16 MiB on a larger host), and
# the gateway, which allocates ~140 KB per request, then needs 1.7x the CPU per request, mostly
# scavenges (`npm run bench:ab -- --memory-limit 512 --a-args=`: 0.59x with this flag). 16 MiB
# restores the size the benchmark measures, for ~37 MB more RSS under load; the benchmark starts
# the gateway with these flags, read from this line (bench/processes.js).
CMD ["--max-semi-space-size=16", "--expose-gc", "dist/apps/gateway/main.js"]
