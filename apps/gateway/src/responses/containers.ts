import type { Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { RESPONSE_ID } from './response-id';
import { ownerOf, type StoredResponse, type StoredResponses } from './stored-responses';

/** A code execution container a request names to reuse, and where in the body. */
export interface NamedContainer {
  id: string;
  /** The field that names it (`container`, `tools[2].container`), for the error's `param`. */
  at: string;
}

/**
 * The answer for a container the caller may not use: none recorded, another user's, another
 * product's, all alike (ids cannot be probed).
 */
function containerNotFound({ id, at }: NamedContainer): GatewayError {
  return new GatewayError(
    'container_not_found',
    `No code execution container with id '${id.slice(0, 128)}' was made for this user through keygate; leave it out for a new one`,
    { param: at },
  );
}

/**
 * Checks the containers a request names (a code execution container is held by the provider under
 * the product's shared key, with its files and state: only the user whose answer ran in it may reuse
 * it) and that each is at the host serving the request. Returns their host, to pin fallbacks to.
 */
export async function checkContainers(
  stored: StoredResponses,
  principal: Principal,
  named: readonly NamedContainer[],
  serving: { baseUrl: string; model: string },
): Promise<string | undefined> {
  const owner = ownerOf(principal);
  const records = await Promise.all(
    named.map(({ id }) => (RESPONSE_ID.test(id) ? stored.findContainer(principal.product, owner, id) : Promise.resolve(undefined))),
  );
  named.forEach((container, k) => {
    const record: StoredResponse | undefined = records[k];
    if (!record) throw containerNotFound(container);
    if (record.baseUrl !== serving.baseUrl)
      throw new GatewayError(
        'unsupported_parameter',
        `${container.at} is a container at another host than the one serving ${serving.model}: reuse it with ${record.model}`,
        { param: container.at },
      );
  });
  return named.length ? serving.baseUrl : undefined;
}

/** Records a container an answer ran in as its caller's (see {@link checkContainers}). */
export function rememberContainer(
  stored: StoredResponses,
  principal: Principal,
  id: string,
  ran: { model: string; baseUrl: string },
): Promise<void> {
  return stored.remember(principal.product, id, {
    owner: ownerOf(principal),
    model: ran.model,
    baseUrl: ran.baseUrl,
    tokens: 0,
    kind: 'container',
  });
}
