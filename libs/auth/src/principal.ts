/** How a caller proved who they are. */
export type CredentialKind = 'jwt' | 'hmac' | 'iap';

/** The authenticated caller: the product comes from the credential, never from the request. */
export interface Principal {
  kind: CredentialKind;
  product: string;
  user: string;
  scopes: readonly string[];
}

/** The scope admin routes require (SPEC §5). */
export const ADMIN_SCOPE = 'keygate.admin';
