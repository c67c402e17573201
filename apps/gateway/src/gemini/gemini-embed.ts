import { GatewayError } from '@keygate/errors';
import { checkBodyModel, checkParts } from './gemini-body';

/**
 * Checks the requests of a `batchEmbedContents` body beyond its DTO, before anything is counted:
 * each must hold a `content` object whose parts are a list (see {@link checkParts}), and name the
 * path's model (`models/{model}`, or the bare id) or none. Google embeds each request with the
 * model it names, so another name would be embedded by a model the product's routing, policy and
 * limits never saw.
 */
export function checkBatchEmbedRequests(requests: ReadonlyArray<Record<string, unknown>>, model: string): void {
  requests.forEach((request, i) => {
    const content = request.content;
    if (typeof content !== 'object' || content === null || Array.isArray(content))
      throw new GatewayError('invalid_request', `requests[${i}].content must be a Content object ({parts})`, {
        param: `requests[${i}].content`,
      });
    checkParts(content, `requests[${i}].content`);
    checkBodyModel(request, model, `requests[${i}].`);
  });
}
