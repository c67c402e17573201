import 'reflect-metadata';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsBoolean,
  IsInt,
  IsNumber,
  IsObject,
  IsString,
  Matches,
  Max,
  Min,
  ValidateIf,
  ValidateNested,
} from 'class-validator';

/**
 * A field that may be left out, but not set to null: YAML's `~` or an empty value would otherwise
 * pass as "not set" and silently keep the value it was meant to override.
 */
const Optional = (): PropertyDecorator => ValidateIf((_object: object, value: unknown) => value !== undefined);

/** Node runs a timer set longer than this many seconds (about 24.8 days) after 1 ms. */
const MAX_TIMER_SECONDS = 2_147_483;

/** A budget above this many dollars a day is a typo (cents written as dollars, or a stray exponent). */
const MAX_DAILY_BUDGET_USD = 1e9;

/** A daily budget: a finite number of US dollars, from 0 (none) to {@link MAX_DAILY_BUDGET_USD}. */
function BudgetDollars(): PropertyDecorator {
  const rules = [
    IsNumber({ allowNaN: false, allowInfinity: false }, { message: 'must be a number (US dollars per UTC day, 0 for no budget)' }),
    Min(0),
    Max(MAX_DAILY_BUDGET_USD),
  ];
  return (target, key) => rules.forEach((rule) => rule(target, key));
}

/** `limits` block of the policy file (SPEC §4). 0 disables a limit. */
export class LimitsSchema {
  @Optional() @IsInt() @Min(0) requests_per_second?: number;
  @Optional() @IsInt() @Min(0) user_requests_per_second?: number;
  @Optional() @IsInt() @Min(0) daily_requests?: number;
  @Optional() @IsInt() @Min(0) user_daily_requests?: number;
  @Optional() @IsInt() @Min(0) daily_tokens?: number;
  @Optional() @IsInt() @Min(0) user_daily_tokens?: number;
  /** US dollars the product's priced requests may cost per UTC day, fractions allowed (0: no budget). */
  @Optional() @BudgetDollars() daily_cost_usd?: number;
  /** The same for each user of the product. */
  @Optional() @BudgetDollars() user_daily_cost_usd?: number;
}

/** `auto_block`: a user refused this many times within the window is blocked for a while. */
export class AutoBlockSchema {
  /** Refusals (rate limit or quota) that trigger a block; 0 turns auto-block off. */
  @Optional() @IsInt() @Min(0) rejections?: number;
  @Optional() @IsInt() @Min(1) @Max(MAX_TIMER_SECONDS) window_seconds?: number;
  // Ten years: a block's expiry must stay a date (the admin route has the same bound).
  @Optional() @IsInt() @Min(1) @Max(315_360_000) block_seconds?: number;
}

/** `temperature` range of the parameter policy; a field left out keeps the value it overrides. */
export class TemperatureRangeSchema {
  @Optional() @IsNumber() @Min(0) @Max(2) min?: number;
  @Optional() @IsNumber() @Min(0) @Max(2) max?: number;
}

/** A name in `refused_fields` or `refused_tools`: a field name or a tool type, a trailing `*` matching any ending. */
const REFUSED_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}\*?$/;
const REFUSED_NAME_MESSAGE = 'entries must be names (letters, digits, _ . -), a trailing * matching any ending';

/** A list of such names (`refused_fields`, `refused_tools`, `refused_betas`), at most 100. */
function RefusedNames(): PropertyDecorator {
  const rules = [
    Optional(),
    IsArray(),
    ArrayMaxSize(100),
    IsString({ each: true }),
    Matches(REFUSED_NAME, { each: true, message: REFUSED_NAME_MESSAGE }),
  ];
  return (target, key) => rules.forEach((rule) => rule(target, key));
}

/** `policy` block of the policy file (SPEC §4). */
export class ParameterPolicySchema {
  /** No model writes anywhere near 10 M tokens in one answer; 1e300 would go upstream as sent. */
  @Optional() @IsInt() @Min(1) @Max(10_000_000) max_tokens?: number;
  @Optional() @IsObject() @ValidateNested() @Type(() => TemperatureRangeSchema) temperature?: TemperatureRangeSchema;
  // 1 GiB: the body limit is enforced while the body streams in, but a bound keeps it a real one.
  @Optional() @IsInt() @Min(1) @Max(1_073_741_824) max_request_bytes?: number;
  // A stream's limit becomes a timer: Node runs one set past ~24.8 days after 1 ms.
  @Optional() @IsInt() @Min(1) @Max(MAX_TIMER_SECONDS) max_stream_seconds?: number;
  /** Extension: top-level request fields refused (400 `policy_violation`), e.g. `service_tier`, `mcp_servers`. */
  @RefusedNames()
  refused_fields?: string[];
  /** Extension: tool types refused in `tools` (400 `policy_violation`), e.g. Anthropic's server tools `web_search_*`. */
  @RefusedNames()
  refused_tools?: string[];
  /** Extension: `anthropic-beta` features refused on `/v1/messages` (400 `policy_violation`), e.g. the long-context `context-1m-*`. */
  @RefusedNames()
  refused_betas?: string[];
  /**
   * Extension: each request names its caller to the provider by a pseudonymous id (OpenAI's
   * `safety_identifier`, Anthropic's `metadata.user_id`), so the provider's abuse monitoring sees
   * users rather than one key shared by the whole product.
   */
  @Optional() @IsBoolean() end_user_id?: boolean;
}

/** One product's overrides, or the `defaults`. */
export class ProductPolicySchema {
  @Optional() @IsObject() @ValidateNested() @Type(() => LimitsSchema) limits?: LimitsSchema;
  @Optional() @IsObject() @ValidateNested() @Type(() => ParameterPolicySchema) policy?: ParameterPolicySchema;
  @Optional() @IsObject() @ValidateNested() @Type(() => AutoBlockSchema) auto_block?: AutoBlockSchema;
  /** model → ordered list of fallback models. Checked field by field in the loader. */
  @Optional() @IsObject() fallbacks?: Record<string, string[]>;
  /** Who may call this product through Google IAP: `user:<email>` or `domain:<Workspace domain>` (the assertion's `hd`) entries. */
  @Optional()
  @IsArray()
  @Matches(/^(user:[^\s@]+@[^\s@]+|domain:[A-Za-z0-9.-]+\.[A-Za-z]{2,})$/, {
    each: true,
    message: 'entries must be user:<email> or domain:<domain>',
  })
  iap_members?: string[];
}

/** A million tokens for more than this many dollars is a typo (a price per token written per million, or cents). */
const MAX_PRICE_PER_MILLION = 100_000;

/** More price tiers than this for one model is a mistake: providers publish one or two. */
export const MAX_PRICE_TIERS = 8;

/** One model's entry under the policy file's `prices`: US dollars per million tokens. */
export class ModelPriceSchema {
  @Dollars() input!: number;
  @Dollars() output!: number;
  /** Prompt-cache reads; `input` when left out. */
  @Optional() @Dollars() cached_input?: number;
  /** Prompt-cache writes for 5 minutes (Anthropic); `input` when left out. */
  @Optional() @Dollars() cache_write?: number;
  /** Prompt-cache writes for an hour (Anthropic); `cache_write` when left out. */
  @Optional() @Dollars() cache_write_1h?: number;
  /** Higher rates for longer prompts, lowest threshold first: each entry is a {@link PriceTierSchema}, checked in the loader. */
  @Optional() @IsArray() @ArrayMaxSize(MAX_PRICE_TIERS) tiers?: unknown[];
}

/** No model reads a prompt of more than this many tokens (the longest context windows hold 10 M). */
const MAX_TIER_THRESHOLD = 100_000_000;

/**
 * One entry of a price's `tiers`: the rates of every token of a request whose prompt (cache reads
 * and writes included) is longer than `above_prompt_tokens`. Cache rates left out default as a
 * price's do, to this tier's `input` (an hour's writes to its `cache_write`).
 */
export class PriceTierSchema {
  @IsInt({ message: 'must be a whole number of prompt tokens' })
  @Min(1)
  @Max(MAX_TIER_THRESHOLD)
  above_prompt_tokens!: number;
  @Dollars() input!: number;
  @Dollars() output!: number;
  @Optional() @Dollars() cached_input?: number;
  @Optional() @Dollars() cache_write?: number;
  @Optional() @Dollars() cache_write_1h?: number;
}

/** A price: a finite number of dollars per million tokens, from 0 to {@link MAX_PRICE_PER_MILLION}. */
function Dollars(): PropertyDecorator {
  const rules = [
    IsNumber({ allowNaN: false, allowInfinity: false }, { message: 'must be a number (US dollars per million tokens)' }),
    Min(0),
    Max(MAX_PRICE_PER_MILLION),
  ];
  return (target, key) => rules.forEach((rule) => rule(target, key));
}
