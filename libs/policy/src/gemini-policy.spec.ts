import { refusalOf } from '@keygate/errors/testing';
import { applyGeminiEmbedPolicy, applyGeminiPolicy, refuseDeniedGemini, type PolicedGeminiRequest } from './gemini-policy';

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

describe('applyGeminiPolicy', () => {
  it('sets generationConfig.maxOutputTokens to the cap when absent, keeping the other settings', () => {
    const body: PolicedGeminiRequest = { contents: [], generationConfig: { topK: 3 } };
    expect(applyGeminiPolicy(body, policy)).toBe(1000);
    expect(body.generationConfig).toEqual({ topK: 3, maxOutputTokens: 1000 });
    const bare: PolicedGeminiRequest = { contents: [] };
    applyGeminiPolicy(bare, policy);
    expect(bare.generationConfig).toEqual({ maxOutputTokens: 1000 });
  });

  it('takes 1 to 8 candidates, as many as Gemini generates', () => {
    for (const candidateCount of [1, 8]) expect(applyGeminiPolicy({ generationConfig: { candidateCount } }, policy)).toBe(1000);
  });

  it('keeps a cap within the product’s and returns it', () => {
    const body: PolicedGeminiRequest = { generationConfig: { maxOutputTokens: 300, temperature: 1 } };
    expect(applyGeminiPolicy(body, policy)).toBe(300);
    expect(body.generationConfig).toEqual({ maxOutputTokens: 300, temperature: 1 });
  });

  it.each([
    [{ generationConfig: { maxOutputTokens: 1001 } }, 'policy_violation', 'generationConfig.maxOutputTokens'],
    [{ generationConfig: { maxOutputTokens: 0 } }, 'invalid_request', 'generationConfig.maxOutputTokens'],
    [{ generationConfig: { maxOutputTokens: '5' } }, 'invalid_request', 'generationConfig.maxOutputTokens'],
    [{ generationConfig: { temperature: 2 } }, 'policy_violation', 'generationConfig.temperature'],
    [{ generationConfig: { temperature: -0.1 } }, 'policy_violation', 'generationConfig.temperature'],
    [{ generationConfig: { temperature: 'hot' } }, 'invalid_request', 'generationConfig.temperature'],
    [{ generationConfig: [] }, 'invalid_request', 'generationConfig'],
    [{ generation_config: { max_output_tokens: 100000 } }, 'invalid_request', 'generation_config'],
    [{ generationConfig: { max_output_tokens: 100000 } }, 'invalid_request', 'generationConfig.max_output_tokens'],
    // Candidates the reservation could not count: each is reserved at the cap.
    [{ generationConfig: { candidate_count: 6 } }, 'invalid_request', 'generationConfig.candidate_count'],
    [{ generationConfig: { candidateCount: '6' } }, 'invalid_request', 'generationConfig.candidateCount'],
    [{ generationConfig: { candidateCount: 0 } }, 'invalid_request', 'generationConfig.candidateCount'],
    [{ generationConfig: { candidateCount: 1.5 } }, 'invalid_request', 'generationConfig.candidateCount'],
    // More than Gemini generates: the client's mistake, not a reservation past the daily quota.
    [{ generationConfig: { candidateCount: 9 } }, 'invalid_request', 'generationConfig.candidateCount'],
    [{ generationConfig: { candidateCount: 2 ** 53 } }, 'invalid_request', 'generationConfig.candidateCount'],
  ])('refuses %j (%s, naming %s)', (body, code, param) => {
    const error = refusalOf(() => applyGeminiPolicy(body as PolicedGeminiRequest, policy));
    expect(error.code).toBe(code);
    expect(error.options.param).toBe(param);
  });

  it('applies refused_fields and refused_tools before the cap', () => {
    const error = refusalOf(() => applyGeminiPolicy({ cachedContent: 'c/1' }, { ...policy, refusedFields: ['cachedContent'] }));
    expect(error).toMatchObject({ code: 'policy_violation', options: { param: 'cachedContent' } });
  });
});

describe('refuseDeniedGemini', () => {
  const guarded = { ...policy, refusedFields: ['cached*'], refusedTools: ['googleSearch*', 'codeExecution'] };

  it.each([
    [{ tools: [{ functionDeclarations: [] }, { googleSearch: {} }] }, 'tools[1].googleSearch'],
    [{ tools: [{ google_search_retrieval: {} }] }, 'tools[0].google_search_retrieval'],
    [{ tools: [{ codeExecution: {} }] }, 'tools[0].codeExecution'],
    [{ cachedContent: 'cachedContents/x' }, 'cachedContent'],
    [{ cached_content: 'cachedContents/x' }, 'cached_content'],
  ])('refuses %j naming %s', (body, param) => {
    expect(refusalOf(() => refuseDeniedGemini(body, guarded))).toMatchObject({ code: 'policy_violation', options: { param } });
  });

  it.each([
    [{ tools: [{ googleSearch: {} }] }, 'tools[0].googleSearch'],
    [{ tools: [{ google_search: {} }] }, 'tools[0].google_search'],
    [{ tools: [{ codeExecution: {} }] }, 'tools[0].codeExecution'],
    [{ cachedContent: 'cachedContents/x' }, 'cachedContent'],
    [{ safetySettings: [] }, 'safetySettings'],
  ])('refuses %j naming %s when the policy writes the names in snake_case', (body, param) => {
    const snake = { ...policy, refusedFields: ['cached_content', 'safety_settings'], refusedTools: ['google_search', 'code_execution*'] };
    expect(refusalOf(() => refuseDeniedGemini(body, snake))).toMatchObject({ code: 'policy_violation', options: { param } });
  });

  it('passes tool kinds and fields the policy does not list, and listed ones sent as null', () => {
    expect(() =>
      refuseDeniedGemini(
        { cachedContent: null, tools: [{ functionDeclarations: [{ name: 'f' }] }, { urlContext: {} }, { googleSearch: null }] },
        guarded,
      ),
    ).not.toThrow();
  });
});

describe('applyGeminiEmbedPolicy', () => {
  const guarded = { ...policy, refusedFields: ['title', 'output*'] };

  it('passes a body naming no refused field, unchanged', () => {
    const body = { content: { parts: [{ text: 'x' }] }, taskType: 'RETRIEVAL_QUERY' };
    applyGeminiEmbedPolicy(body, guarded, false);
    expect(body).toEqual({ content: { parts: [{ text: 'x' }] }, taskType: 'RETRIEVAL_QUERY' });
    const batch = { requests: [{ content: { parts: [{ text: 'x' }] }, title: null }] };
    applyGeminiEmbedPolicy(batch, guarded, true);
    expect(batch.requests).toHaveLength(1);
  });

  it('refuses a refused field at the top of embedContent, in its camelCase form too', () => {
    const top = refusalOf(() => applyGeminiEmbedPolicy({ content: {}, title: 'doc' }, guarded, false));
    expect(top).toMatchObject({ code: 'policy_violation', options: { param: 'title' } });
    const snake = refusalOf(() => applyGeminiEmbedPolicy({ content: {}, output_dimensionality: 8 }, guarded, false));
    expect(snake).toMatchObject({ code: 'policy_violation', options: { param: 'output_dimensionality' } });
  });

  it('refuses a refused field in any request of a batch, naming the request', () => {
    const body = { requests: [{ content: {} }, { content: {}, outputDimensionality: 8 }] };
    const error = refusalOf(() => applyGeminiEmbedPolicy(body, guarded, true));
    expect(error).toMatchObject({ code: 'policy_violation', options: { param: 'requests[1].outputDimensionality' } });
    expect(error.message).toBe('requests[1].outputDimensionality is not allowed for this product');
  });

  it('reads the requests of a batch only when the body is one', () => {
    expect(() => applyGeminiEmbedPolicy({ requests: [{ title: 'x' }] }, guarded, false)).not.toThrow();
  });
});
