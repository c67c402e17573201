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

/** The RFC 9728 metadata URL for the gateway. */
export function resourceMetadataUrl(request: FastifyRequest, configured: string | undefined): string {
  return `${publicBaseUrl(request, configured)}/.well-known/oauth-protected-resource`;
}

function first(v: string | string[] | undefined): string | undefined {
  const value = Array.isArray(v) ? v[0] : v;
  return value?.split(',')[0]?.trim() || undefined;
}
