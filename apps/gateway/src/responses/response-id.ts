/** OpenAI's ids (`resp_…`, `msg_…`): what the stored-response routes take in their path and query, and keygate's Redis keys. */
export const RESPONSE_ID = /^[A-Za-z0-9_-]{1,128}$/;
