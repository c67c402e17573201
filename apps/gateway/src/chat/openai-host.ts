/** Hosts already judged, by base URL: a product has a few, and chat asks on every request. */
const judged = new Map<string, boolean>();

/**
 * Whether a base URL is OpenAI's own API: `api.openai.com` or one of its regional hosts
 * (`us.api.openai.com`, `eu.api.openai.com`, for data residency), over https. Its reasoning
 * models refuse `max_tokens`; an OpenAI-compatible host may know only that field.
 */
export function isOpenAiOwnHost(baseUrl: string): boolean {
  let own = judged.get(baseUrl);
  if (own === undefined) {
    own = false;
    try {
      const { protocol, hostname } = new URL(baseUrl);
      own = protocol === 'https:' && (hostname === 'api.openai.com' || hostname.endsWith('.api.openai.com'));
    } catch {
      // Not a URL: not OpenAI's.
    }
    if (judged.size < 1000) judged.set(baseUrl, own);
  }
  return own;
}
