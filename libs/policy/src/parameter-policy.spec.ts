import { GatewayError } from '@keygate/errors';
import { applyParameterPolicy, MIN_OUTPUT_TOKENS, refuseBetas, refuseDenied } from './parameter-policy';

const policy = {
  maxTokens: 1000,
  temperature: { min: 0, max: 1.5 },
  maxRequestBytes: 1024,
  maxStreamSeconds: 60,
  refusedFields: [],
  refusedTools: [],
  refusedBetas: [],
  endUserId: false,
};

describe('applyParameterPolicy', () => {
  it('sets the cap in the given field when the client sent none', () => {
    const body: Record<string, unknown> = {};
    expect(applyParameterPolicy(body, policy)).toBe(1000);
    expect(body).toEqual({ max_tokens: 1000 });
    const other: Record<string, unknown> = {};
    applyParameterPolicy(other, policy, 'max_completion_tokens');
    expect(other).toEqual({ max_completion_tokens: 1000 });
  });

  it('keeps a value within the cap and returns the effective one', () => {
    const one = { max_completion_tokens: 300 };
    expect(applyParameterPolicy(one, policy)).toBe(300);
    expect(one).toEqual({ max_completion_tokens: 300 });
  });

  it('gives both fields the smaller value when both are sent, so no host can go past the reservation', () => {
    const body = { max_tokens: 200, max_completion_tokens: 100 };
    expect(applyParameterPolicy(body, policy)).toBe(100);
    expect(body).toEqual({ max_tokens: 100, max_completion_tokens: 100 });
  });

  it("sends OpenAI's own endpoint max_completion_tokens alone: it refuses both together, and its reasoning models refuse max_tokens", () => {
    const both = { max_tokens: 200, max_completion_tokens: 100 };
    expect(applyParameterPolicy(both, policy, 'max_completion_tokens')).toBe(100);
    expect(both).toEqual({ max_completion_tokens: 100 });
    const legacy: Record<string, unknown> = { max_tokens: 300 };
    expect(applyParameterPolicy(legacy, policy, 'max_completion_tokens')).toBe(300);
    expect(legacy).toEqual({ max_completion_tokens: 300 });
  });

  it('reads and sets max_output_tokens alone for the Responses API', () => {
    const absent: Record<string, unknown> = {};
    expect(applyParameterPolicy(absent, policy, 'max_output_tokens')).toBe(1000);
    expect(absent).toEqual({ max_output_tokens: 1000 });
    const within = { max_output_tokens: 200 };
    expect(applyParameterPolicy(within, policy, 'max_output_tokens')).toBe(200);
    expect(within).toEqual({ max_output_tokens: 200 });
    expect(() => applyParameterPolicy({ max_output_tokens: 1001 }, policy, 'max_output_tokens')).toThrow(
      "max_output_tokens 1001 exceeds this product's cap of 1000",
    );
  });

  it("refuses to set a cap below the Responses API's minimum where the client sent none; chat's fields take it", () => {
    const small = { ...policy, maxTokens: MIN_OUTPUT_TOKENS - 1 };
    const absent: Record<string, unknown> = {};
    let refusal: unknown;
    try {
      applyParameterPolicy(absent, small, 'max_output_tokens');
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(GatewayError);
    expect(refusal).toMatchObject({ code: 'policy_violation', options: { param: 'max_output_tokens' } });
    expect((refusal as Error).message).toMatch(/cap of 15 .*minimum max_output_tokens of 16/);
    expect(absent).toEqual({});
    // At the minimum the cap goes as it is; a client's value above a small cap is over the cap.
    const atMinimum: Record<string, unknown> = {};
    expect(applyParameterPolicy(atMinimum, { ...policy, maxTokens: MIN_OUTPUT_TOKENS }, 'max_output_tokens')).toBe(MIN_OUTPUT_TOKENS);
    expect(atMinimum).toEqual({ max_output_tokens: MIN_OUTPUT_TOKENS });
    expect(() => applyParameterPolicy({ max_output_tokens: 16 }, small, 'max_output_tokens')).toThrow(/exceeds this product's cap of 15/);
    for (const field of ['max_tokens', 'max_completion_tokens'] as const) {
      const chat: Record<string, unknown> = {};
      expect(applyParameterPolicy(chat, small, field)).toBe(15);
      expect(chat).toEqual({ [field]: 15 });
    }
  });

  it.each([
    [{ max_tokens: 1001 }, 'max_tokens', /cap of 1000/],
    [{ max_completion_tokens: 5000 }, 'max_completion_tokens', /cap of 1000/],
    [{ temperature: 1.6 }, 'temperature', /between 0 and 1.5/],
    [{ temperature: -0.1 }, 'temperature', /between 0 and 1.5/],
  ])('rejects %j as a policy violation naming %s', (body, param, message) => {
    try {
      applyParameterPolicy(body, policy);
      throw new Error('expected a policy violation');
    } catch (error) {
      expect(error).toBeInstanceOf(GatewayError);
      expect((error as GatewayError).code).toBe('policy_violation');
      expect((error as GatewayError).options.param).toBe(param);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('accepts the range bounds and null values', () => {
    expect(() => applyParameterPolicy({ temperature: 1.5, max_tokens: null }, policy)).not.toThrow();
  });
});

describe('refuseDenied', () => {
  const strict = { ...policy, refusedFields: ['service_tier', 'mcp_*'], refusedTools: ['web_search_*', 'custom'] };

  /** The policy violation `body` raises, or undefined. */
  function violation(body: Record<string, unknown>, p = strict): GatewayError | undefined {
    try {
      refuseDenied(body, p);
      return undefined;
    } catch (error) {
      expect(error).toBeInstanceOf(GatewayError);
      return error as GatewayError;
    }
  }

  it('refuses a listed field, by name or by prefix, naming it', () => {
    const tier = violation({ model: 'm', service_tier: 'priority' });
    expect([tier?.code, tier?.options.param, tier?.message]).toEqual([
      'policy_violation',
      'service_tier',
      'service_tier is not allowed for this product',
    ]);
    expect(violation({ mcp_servers: [{ type: 'url', url: 'https://mcp.example' }] })?.options.param).toBe('mcp_servers');
  });

  it('lets a listed field sent as null through (it asks for nothing), and every other field', () => {
    expect(violation({ model: 'm', service_tier: null, temperature: 1, tools: [{ type: 'function' }] })).toBeUndefined();
  });

  it('refuses the tools a request asks for by a field: chat’s web_search_options (web_search) and the legacy functions (function)', () => {
    const searching = { ...policy, refusedTools: ['web_search*'] };
    const search = violation({ model: 'gpt-4o-search-preview', web_search_options: {} }, searching);
    expect([search?.code, search?.options.param]).toEqual(['policy_violation', 'web_search_options']);
    expect(violation({ model: 'm', web_search_options: null }, searching)).toBeUndefined();
    const functions = { ...policy, refusedTools: ['function'] };
    expect(violation({ model: 'm', functions: [{ name: 'f', parameters: {} }] }, functions)?.options.param).toBe('functions');
    expect(violation({ model: 'm', functions: [] }, functions)).toBeUndefined();
    // Not listed: both pass.
    expect(violation({ model: 'm', web_search_options: {}, functions: [{ name: 'f' }] })).toBeUndefined();
  });

  it('refuses a tool of a listed type, naming its place; a tool without a type is custom', () => {
    const tools = [
      { type: 'function', function: { name: 'f' } },
      { type: 'web_search_20250305', name: 'web_search' },
    ];
    const search = violation({ tools });
    expect([search?.code, search?.options.param, search?.message]).toEqual([
      'policy_violation',
      'tools[1].type',
      'tools[1]: the tool type web_search_20250305 is not allowed for this product',
    ]);
    expect(violation({ tools: [{ name: 'get_weather', input_schema: { type: 'object' } }] })?.options.param).toBe('tools[0].type');
  });

  it('refuses a listed tool declared in a Responses input item (Codex’s additional_tools) or inside a namespace', () => {
    const searching = { ...policy, refusedTools: ['web_search*'] };
    // What Codex sends for its catalog models: every tool in an input item, grouped in namespaces.
    const additional = {
      type: 'additional_tools',
      role: 'developer',
      tools: [
        { type: 'namespace', name: 'functions', tools: [{ type: 'function', name: 'wait', parameters: {} }] },
        { type: 'web_search', external_web_access: false },
      ],
    };
    const inItem = violation({ model: 'm', input: [{ type: 'message', role: 'user', content: 'hi' }, additional] }, searching);
    expect([inItem?.code, inItem?.options.param, inItem?.message]).toEqual([
      'policy_violation',
      'input[1].tools[1].type',
      'input[1].tools[1]: the tool type web_search is not allowed for this product',
    ]);
    const nested = { type: 'namespace', name: 'ns', tools: [{ type: 'function', name: 'f' }, { type: 'web_search_preview' }] };
    expect(violation({ model: 'm', tools: [nested] }, searching)?.options.param).toBe('tools[0].tools[1].type');
    // The same items without a listed type pass.
    expect(
      violation(
        { model: 'm', input: [{ ...additional, tools: additional.tools.slice(0, 1) }], tools: [{ ...nested, tools: [] }] },
        searching,
      ),
    ).toBeUndefined();
  });

  it('costs nothing and refuses nothing with empty lists (the default)', () => {
    expect(violation({ service_tier: 'priority', tools: [{ type: 'web_search_20250305' }] }, policy)).toBeUndefined();
  });

  it('is applied with the rest of the parameter policy', () => {
    expect(() => applyParameterPolicy({ service_tier: 'flex' }, strict)).toThrow('service_tier is not allowed for this product');
  });
});

describe('refuseBetas', () => {
  const strict = { ...policy, refusedBetas: ['context-1m*', 'mcp-client-2025-04-04'] };
  const refusal = (beta: string | undefined, p = strict): unknown => {
    try {
      refuseBetas(beta, p);
      return undefined;
    } catch (error) {
      return error;
    }
  };

  it('refuses a listed feature anywhere in the list, naming it, with param anthropic-beta', () => {
    const error = refusal('interleaved-thinking-2025-05-14, context-1m-2025-08-07');
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe('policy_violation');
    expect((error as GatewayError).options.param).toBe('anthropic-beta');
    expect((error as GatewayError).message).toContain('context-1m-2025-08-07');
    expect(refusal('mcp-client-2025-04-04')).toBeInstanceOf(GatewayError);
  });

  it('refuses a listed feature in any letter case (a feature name is not made new by capitals)', () => {
    expect(refusal('Context-1M-2025-08-07')).toBeInstanceOf(GatewayError);
    expect(refusal('MCP-Client-2025-04-04')).toBeInstanceOf(GatewayError);
    expect(refusal('mcp-client-2025-04-04', { ...policy, refusedBetas: ['MCP-client-*'] })).toBeInstanceOf(GatewayError);
  });

  it('passes features not listed, no header, and any list when the policy refuses none', () => {
    expect(refusal('interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14')).toBeUndefined();
    expect(refusal('mcp-client-2025-11-20')).toBeUndefined();
    expect(refusal(undefined)).toBeUndefined();
    expect(refusal('context-1m-2025-08-07', policy)).toBeUndefined();
  });
});
