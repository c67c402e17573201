import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsString, Matches, Max, MaxLength, Min, MinLength, ValidateBy, ValidateIf } from 'class-validator';
import { hasInvisibleCharacters, INVISIBLE_CHARACTERS_RULE } from '@keygate/auth';
import { StrictBody } from '../http/dto-validation.pipe';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** The longest expiry a block may be given: ten years (an expiry must stay a valid date). */
const MAX_BLOCK_SECONDS = 10 * 365 * 86_400;

/** A text field without control or invisible characters (bidi controls, zero-width spaces, line breaks). */
function NoInvisibleCharacters(field: string): PropertyDecorator {
  return ValidateBy({
    name: 'noInvisibleCharacters',
    validator: {
      validate: (v: unknown) => typeof v === 'string' && !hasInvisibleCharacters(v),
      defaultMessage: () => `${field} must not contain ${INVISIBLE_CHARACTERS_RULE}`,
    },
  });
}

/** `POST /admin/blocks`: unknown fields are refused (a misspelt `user` would block the whole product). */
@StrictBody()
export class CreateBlockDto {
  @ApiProperty({ example: 'demo' }) @Matches(NAME, { message: 'product must be a product name' }) product!: string;
  @ApiPropertyOptional({ description: 'Block only this user of the product; leave it out to block the whole product', example: 'mallory' })
  // Only absent means the whole product: a script's `null` (Python's None) for a user it did not
  // find must not widen the block to every user.
  @ValidateIf((block: CreateBlockDto) => block.user !== undefined)
  @IsString({ message: 'user must be a string (leave user out to block the whole product)' })
  @MinLength(1)
  @MaxLength(256)
  // As DELETE takes it: a block no DELETE can name would stay until Redis is edited by hand.
  @NoInvisibleCharacters('user')
  user?: string;
  @ApiProperty({ example: 'abuse report #123' })
  @IsString()
  @MinLength(1)
  @MaxLength(500)
  // It is written to log lines and told to the blocked caller: no line breaks or bidirectional tricks.
  @NoInvisibleCharacters('reason')
  reason!: string;
  @ApiPropertyOptional({
    description: 'Seconds until the block lifts (at most 10 years); absent = until deleted',
    example: 3600,
    type: 'integer',
    minimum: 1,
    maximum: MAX_BLOCK_SECONDS,
  })
  // Only absent means no expiry: a script's `null` must not make a block it meant to end permanent.
  @ValidateIf((block: CreateBlockDto) => block.expires_in_seconds !== undefined)
  @IsInt({ message: 'expires_in_seconds must be an integer number (leave it out for a block until deleted)' })
  @Min(1)
  @Max(MAX_BLOCK_SECONDS)
  expires_in_seconds?: number;
}

/** A block as listed. */
export class BlockDto {
  @ApiProperty({ example: 'demo' }) product!: string;
  @ApiProperty({ nullable: true, type: String, example: 'mallory', description: 'null: the whole product is blocked' }) user!:
    string | null;
  @ApiProperty({ example: 'abuse report #123' }) reason!: string;
  @ApiProperty({ example: '2026-12-05T09:30:00.000Z' }) createdAt!: string;
  @ApiProperty({ nullable: true, type: String, example: '2026-12-05T10:30:00.000Z', description: 'null: until deleted' })
  expiresAt!: string | null;
  @ApiProperty({ example: 'ops-oncall', description: 'The operator who made it (their token’s sub)' }) createdBy!: string;
}

/** `GET /admin/blocks`. */
export class BlockListDto {
  @ApiProperty({ type: [BlockDto] }) data!: BlockDto[];
}

/** `DELETE /admin/blocks`. */
export class DeletedDto {
  @ApiProperty({ example: true }) deleted!: boolean;
}

class DailyCountsDto {
  @ApiProperty({ type: 'integer', example: 42 }) total!: number;
  @ApiProperty({ example: { alice: 40, bob: 2 }, additionalProperties: { type: 'integer' } }) users!: Record<string, number>;
}

/** A day's cost, in US dollars (added up in billionths of a dollar, so no float drift). */
class DailyCostDto {
  @ApiProperty({ type: 'number', example: 0.412537 }) total!: number;
  @ApiProperty({ example: { alice: 0.40125, bob: 0.011287 }, additionalProperties: { type: 'number' } }) users!: Record<string, number>;
}

/** `GET /admin/usage`. */
export class UsageDto {
  @ApiProperty({ example: 'demo' }) product!: string;
  @ApiProperty({ example: '2026-12-05' }) date!: string;
  @ApiProperty({
    enum: ['shared', 'replica'],
    example: 'shared',
    description:
      "shared: every replica's counts (Redis). replica: this replica's alone, because no Redis is configured or Redis is unreachable right now",
  })
  scope!: 'shared' | 'replica';
  @ApiProperty({ type: DailyCountsDto }) requests!: DailyCountsDto;
  @ApiProperty({
    type: DailyCountsDto,
    description:
      "The day's tokens (tokens_in + tokens_out of its requests), counted when each request ends; under a daily token quota a request in flight counts at its reservation (its prompt estimate and max_tokens) until it is settled",
  })
  tokens!: DailyCountsDto;
  @ApiProperty({
    type: DailyCostDto,
    description:
      "What the day's requests cost in US dollars: the sum of their audit records' cost_usd, at the policy file's prices " +
      '(a model without a price adds nothing: a product none of whose models has one reports 0)',
  })
  cost_usd!: DailyCostDto;
}
