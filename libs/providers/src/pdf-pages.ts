import { constants, inflateSync } from 'node:zlib';

/**
 * A page object's dictionary entry: `/Type /Page`, with or without the space, and not `/Pages`
 * (the page tree's inner nodes) or any other name that begins so.
 */
const PAGE_TYPE = /\/Type\s*\/Page(?![A-Za-z0-9#._-])/g;
/** Object streams inflated per PDF at most: a file with more is counted from the first ones. */
const MAX_OBJECT_STREAMS = 1_024;
/** The most bytes one object stream is inflated to (they hold object dictionaries: kilobytes, as a rule). */
const MAX_INFLATED_BYTES = 4 << 20;

/**
 * How many pages a PDF has, read from its bytes without rendering it: its page objects
 * (`/Type /Page`), in the file's body and in its Flate-compressed object streams (`/Type /ObjStm`,
 * PDF 1.5 and later, where most producers now put them). Undefined when no page object is found
 * (not a PDF, an encrypted one, object streams under another filter). An estimate: a file updated
 * incrementally may hold a page's older versions too, each counted.
 */
export function pdfPageCount(pdf: Buffer): number | undefined {
  // latin1 maps each byte to one character, so offsets in the text are offsets in the bytes.
  const text = pdf.toString('latin1');
  let pages = count(text);
  let streams = 0;
  for (let at = text.indexOf('/ObjStm'); at >= 0 && streams < MAX_OBJECT_STREAMS; at = text.indexOf('/ObjStm', at + 7)) {
    streams++;
    const data = streamData(pdf, text, at);
    if (data) pages += count(inflated(data));
  }
  return pages > 0 ? pages : undefined;
}

function count(text: string): number {
  return text.match(PAGE_TYPE)?.length ?? 0;
}

/**
 * The raw data of the stream whose dictionary holds `at`: from the end of line after its `stream`
 * keyword to its `endstream` (a `/Length` given by reference needs no lookup so).
 */
function streamData(pdf: Buffer, text: string, at: number): Buffer | undefined {
  const keyword = text.indexOf('stream', at);
  if (keyword < 0) return undefined;
  let start = keyword + 6;
  if (text.charCodeAt(start) === 0x0d) start++;
  if (text.charCodeAt(start) === 0x0a) start++;
  const end = text.indexOf('endstream', start);
  return end < 0 ? undefined : pdf.subarray(start, end);
}

/** A Flate stream's content as text; '' when it is not one, or is damaged. */
function inflated(data: Buffer): string {
  try {
    // A sync flush at the end: the end of line before `endstream` and a stream cut short both still read.
    return inflateSync(data, { maxOutputLength: MAX_INFLATED_BYTES, finishFlush: constants.Z_SYNC_FLUSH }).toString('latin1');
  } catch {
    return '';
  }
}
