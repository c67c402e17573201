import type { GatewayError } from '@keygate/errors';
import { refusalOf } from '@keygate/errors/testing';
import { DtoValidationPipe } from '../dto-validation.pipe';

/** A request body DTO's checks as a route runs them (the body pipe over the body's JSON bytes), for the DTO specs. */
export interface BodyCheck {
  /** The body as the pipe passes it on; throws its refusal. */
  validate(body: unknown): unknown;
  /** The pipe's refusal of `body` ({@link refusalOf}: anything else fails the spec). */
  refusal(body: unknown): GatewayError;
}

export function bodyCheck(metatype: new () => object): BodyCheck {
  const pipe = new DtoValidationPipe();
  const validate = (body: unknown): unknown => pipe.transform(Buffer.from(JSON.stringify(body)), { type: 'body', metatype });
  return { validate, refusal: (body) => refusalOf(() => validate(body)) };
}
