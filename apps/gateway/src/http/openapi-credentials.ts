import type { OpenAPIObject } from '@nestjs/swagger';
import { HMAC_HEADERS, IAP_ASSERTION_HEADER } from '@keygate/auth';
import type { GatewayConfig } from '@keygate/config';

// Markdown, as Swagger UI renders it: `<timestamp>` outside a code span would be taken for an HTML tag and vanish.
const NOT_IN_SWAGGER_UI =
  'For programs: a signature covers one request’s body and time and is accepted once, so Swagger UI cannot reuse it; use the bearer JWT there.';
const HMAC_SCHEMES = {
  'hmac-client-id': {
    header: HMAC_HEADERS.clientId,
    description: `HMAC client id (SPEC §5), sent with \`x-timestamp\` and \`x-signature\`. ${NOT_IN_SWAGGER_UI}`,
  },
  'hmac-timestamp': {
    header: HMAC_HEADERS.timestamp,
    description: `Unix seconds, within ±300 s of the gateway clock. ${NOT_IN_SWAGGER_UI}`,
  },
  'hmac-signature': {
    header: HMAC_HEADERS.signature,
    description:
      'Lowercase hex HMAC-SHA256 over `<timestamp>\\n<METHOD>\\n<request target with query>\\n<sha256 hex of the raw body>`; ' +
      `\`npm run sign\` computes it. ${NOT_IN_SWAGGER_UI}`,
  },
} as const;

/**
 * Declares the HMAC and IAP credentials the configuration accepts, next to the bearer JWT, on every
 * operation that takes a client credential. The operator routes keep the JWT alone: they need the
 * `keygate.admin` scope, which only a JWT carries. Done on the built document (not with
 * decorators) because which credentials exist is known only from the configuration.
 */
export function documentCredentials(document: OpenAPIObject, config: GatewayConfig): void {
  const hmac = config.secretEnv.hmacSecrets !== undefined || config.secretManager.enabled;
  const iap = config.iap !== undefined;
  if (!hmac && !iap) return;
  const schemes = (document.components ??= {}).securitySchemes ?? {};
  document.components.securitySchemes = schemes;
  const alternatives: Array<Record<string, string[]>> = [];
  if (hmac) {
    for (const [name, { header, description }] of Object.entries(HMAC_SCHEMES)) {
      schemes[name] = { type: 'apiKey', in: 'header', name: header, description };
    }
    alternatives.push(Object.fromEntries(Object.keys(HMAC_SCHEMES).map((name) => [name, []])));
  }
  if (iap) {
    schemes.iap = {
      type: 'apiKey',
      in: 'header',
      name: IAP_ASSERTION_HEADER,
      description: 'Set by Google Identity-Aware Proxy in front of keygate (ES256); the user is its email claim',
    };
    alternatives.push({ iap: [] });
  }
  for (const [path, item] of Object.entries(document.paths)) {
    if (path.startsWith('/admin')) continue;
    for (const operation of Object.values(item) as Array<{ security?: Array<Record<string, string[]>> } | undefined>) {
      // A new array: Nest hands every operation of a controller the same one.
      if (operation?.security?.some((requirement) => 'bearer' in requirement))
        operation.security = [...operation.security, ...alternatives];
    }
  }
}
