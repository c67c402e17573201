import 'reflect-metadata';
import { Type } from 'class-transformer';
import { IsArray, IsInt, IsNumber, IsObject, IsOptional, Matches, Max, Min, ValidateNested } from 'class-validator';

/** `limits` block of the policy file (SPEC §4). 0 disables a limit. */
export class LimitsSchema {
  @IsOptional() @IsInt() @Min(0) requests_per_second?: number;
  @IsOptional() @IsInt() @Min(0) user_requests_per_second?: number;
  @IsOptional() @IsInt() @Min(0) daily_requests?: number;
  @IsOptional() @IsInt() @Min(0) user_daily_requests?: number;
  @IsOptional() @IsInt() @Min(0) daily_tokens?: number;
  @IsOptional() @IsInt() @Min(0) user_daily_tokens?: number;
}

/** `auto_block`: a user refused this many times within the window is blocked for a while. */
export class AutoBlockSchema {
  /** Refusals (rate limit or quota) that trigger a block; 0 turns auto-block off. */
  @IsOptional() @IsInt() @Min(0) rejections?: number;
  @IsOptional() @IsInt() @Min(1) window_seconds?: number;
  @IsOptional() @IsInt() @Min(1) block_seconds?: number;
}

/** `temperature` range of the parameter policy; a field left out keeps the value it overrides. */
export class TemperatureRangeSchema {
  @IsOptional() @IsNumber() @Min(0) @Max(2) min?: number;
  @IsOptional() @IsNumber() @Min(0) @Max(2) max?: number;
}

/** `policy` block of the policy file (SPEC §4). */
export class ParameterPolicySchema {
  @IsOptional() @IsInt() @Min(1) max_tokens?: number;
  @IsOptional() @ValidateNested() @Type(() => TemperatureRangeSchema) temperature?: TemperatureRangeSchema;
  @IsOptional() @IsInt() @Min(1) max_request_bytes?: number;
  // A stream's limit becomes a timer: Node runs one set past ~24.8 days after 1 ms.
  @IsOptional() @IsInt() @Min(1) @Max(2_147_483) max_stream_seconds?: number;
}

/** One product's overrides, or the `defaults`. */
export class ProductPolicySchema {
  @IsOptional() @ValidateNested() @Type(() => LimitsSchema) limits?: LimitsSchema;
  @IsOptional() @ValidateNested() @Type(() => ParameterPolicySchema) policy?: ParameterPolicySchema;
  @IsOptional() @ValidateNested() @Type(() => AutoBlockSchema) auto_block?: AutoBlockSchema;
  /** model → ordered list of fallback models. Checked field by field in the loader. */
  @IsOptional() @IsObject() fallbacks?: Record<string, string[]>;
  /** Who may call this product through Google IAP: `user:<email>` or `domain:<Workspace domain>` (the assertion's `hd`) entries. */
  @IsOptional()
  @IsArray()
  @Matches(/^(user:[^\s@]+@[^\s@]+|domain:[A-Za-z0-9.-]+\.[A-Za-z]{2,})$/, {
    each: true,
    message: 'entries must be user:<email> or domain:<domain>',
  })
  iap_members?: string[];
}
