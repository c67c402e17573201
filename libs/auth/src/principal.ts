/** How a caller proved who they are. */
export type CredentialKind = 'jwt' | 'hmac' | 'iap';

/** The authenticated caller: the product comes from the credential, never from the request. */
export interface Principal {
  kind: CredentialKind;
  product: string;
  user: string;
  scopes: readonly string[];
}

/**
 * Characters a user id may not hold, because an operator reading it would not see them: control
 * characters (C0, DEL and C1), format characters (bidirectional controls such as U+202E, which
 * show `alice\u202Eevil` as `alicelive`, zero-width characters such as U+200B, U+2060 and U+FEFF,
 * tag characters), line and paragraph separators, and unpaired surrogates (stored in Redis as
 * U+FFFD, so two such ids would share one key). The id keys limits and blocks and is printed in
 * the audit: one that looks like another user's, or that an operator cannot type, cannot be
 * blocked alone (`POST /admin/blocks` refuses the same set).
 */
export const INVISIBLE_CHARACTERS = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

/**
 * The format characters emoji are built with, where they draw one visible emoji: a zero-width
 * joiner between two pictographs (👨‍👩‍👧, ❤️‍🔥; the first may carry a variation selector or a skin
 * tone) and the tag characters of a subdivision flag (🏴 + 1–6 lowercase letters or digits + the
 * cancel tag: 🏴󠁧󠁢󠁳󠁣󠁴󠁿). Anywhere else they are the invisible characters above.
 */
const EMOJI_FORMAT_CHARACTERS =
  /(?<=[\p{Extended_Pictographic}\p{Emoji_Modifier}\uFE0F])\u200D(?=\p{Extended_Pictographic})|(?<=\u{1F3F4})[\u{E0030}-\u{E0039}\u{E0061}-\u{E007A}]{1,6}\u{E007F}/gu;

/** Whether `value` holds one of the {@link INVISIBLE_CHARACTERS}, other than within an emoji (see {@link EMOJI_FORMAT_CHARACTERS}). */
export function hasInvisibleCharacters(value: string): boolean {
  return INVISIBLE_CHARACTERS.test(value) && INVISIBLE_CHARACTERS.test(value.replace(EMOJI_FORMAT_CHARACTERS, ''));
}

/** What a credential's user id may not hold, as error messages say it (see {@link INVISIBLE_CHARACTERS}). */
export const INVISIBLE_CHARACTERS_RULE = 'control or invisible characters (such as bidirectional controls or zero-width spaces)';

/** The longest user id a credential may carry, as `POST /admin/blocks` takes it. */
export const MAX_USER_ID_LENGTH = 256;

/**
 * Whether a credential's user id is one an operator can name: 1–256 characters, none of the
 * {@link INVISIBLE_CHARACTERS}. Limits and blocks are keyed by it, so any other user could never be blocked alone.
 */
export function isNameableUserId(value: unknown): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= MAX_USER_ID_LENGTH && !hasInvisibleCharacters(value);
}

/** The scope admin routes require (SPEC §5): an operator of every product. */
export const ADMIN_SCOPE = 'keygate.admin';
/** `keygate.admin:<product>`: an operator of that product alone (its blocks and usage); one scope per product. */
export const PRODUCT_ADMIN_SCOPE_PREFIX = `${ADMIN_SCOPE}:`;

/** The products a credential may operate on through the admin routes. */
export type AdminReach = { readonly all: true } | { readonly all: false; readonly products: ReadonlySet<string> };

/** What a credential's scopes let it administer: every product, the products its `keygate.admin:<product>` scopes name, or none. */
export function adminReach(principal: Pick<Principal, 'scopes'> | undefined): AdminReach {
  const scopes = principal?.scopes ?? [];
  if (scopes.includes(ADMIN_SCOPE)) return { all: true };
  const products = new Set<string>();
  for (const scope of scopes)
    if (scope.startsWith(PRODUCT_ADMIN_SCOPE_PREFIX) && scope.length > PRODUCT_ADMIN_SCOPE_PREFIX.length)
      products.add(scope.slice(PRODUCT_ADMIN_SCOPE_PREFIX.length));
  return { all: false, products };
}

/** Whether a credential's admin reach takes in a product. */
export function administers(reach: AdminReach, product: string): boolean {
  return reach.all || reach.products.has(product);
}
