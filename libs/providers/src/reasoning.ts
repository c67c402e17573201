import type { ProviderName } from '@keygate/secrets';
import { thinkingForm } from './anthropic.thinking';
import { geminiThinks } from './gemini.translate';
import { openAiReasons } from './openai.fields';

/**
 * Whether a model reasons, so that `reasoning_effort` means something to it: Claude 3.7 and later,
 * Gemini 2.5 and later, OpenAI's reasoning models (see {@link openAiReasons}). A fallback to a model
 * that does not goes without the effort, which the requested model was asked for (see
 * `ChatCompletionsService`).
 */
export function reasons(provider: ProviderName, model: string): boolean {
  switch (provider) {
    case 'anthropic':
      return thinkingForm(model) !== 'none';
    case 'gemini':
      return geminiThinks(model);
    case 'openai':
      return openAiReasons(model);
  }
}
