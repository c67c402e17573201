import type { FastifyRequest } from 'fastify';

const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$/;

/**
 * The gateway's public base URL: the configured one, else what the request says it called (behind
 * Google's load balancer `X-Forwarded-Proto` is set by the balancer). A malformed host falls back
 * to the socket's own address (never to anything the caller sent), so a caller cannot inject text
 * into the `WWW-Authenticate` header or the resource metadata.
 */
export function publicBaseUrl(request: FastifyRequest, configured: string | undefined): string {
  if (configured) return configured;
  const proto = first(request.headers['x-forwarded-proto']) === 'https' ? 'https' : request.protocol;
  const host = first(request.headers['x-forwarded-host']) ?? request.headers.host;
  return `${proto}://${host && HOST.test(host) ? host : socketHost(request)}`;
}

function socketHost(request: FastifyRequest): string {
  const { localAddress, localPort } = request.raw.socket ?? {};
  if (!localAddress) return 'localhost';
  const address = localAddress.includes(':') ? `[${localAddress}]` : localAddress;
  return localPort ? `${address}:${localPort}` : address;
}

/** Where RFC 9728 metadata lives under a host. */
export const METADATA_PATH = '/.well-known/oauth-protected-resource';

/** The path of a resource URL, without a trailing slash: '' for a resource at the root of its host. */
export function resourcePath(resource: string): string {
  return new URL(resource).pathname.replace(/\/+$/, '');
}

/**
 * The RFC 9728 metadata URL for the gateway: the well-known path goes between the host and the
 * resource's own path (§3.1), so `https://gw.example.com/keygate` has its metadata at
 * `https://gw.example.com/.well-known/oauth-protected-resource/keygate`.
 */
export function resourceMetadataUrl(request: FastifyRequest, configured: string | undefined): string {
  const base = publicBaseUrl(request, configured);
  return `${new URL(base).origin}${METADATA_PATH}${resourcePath(base)}`;
}

function first(v: string | string[] | undefined): string | undefined {
  const value = Array.isArray(v) ? v[0] : v;
  return value?.split(',')[0]?.trim() || undefined;
}
