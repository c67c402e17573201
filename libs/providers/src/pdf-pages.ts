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

/** An indirect object's header in a file's body: `12 0 obj`. */
const OBJECT_HEADER = /(\d+)\s+\d+\s+obj\b/g;

/**
 * How many pages a PDF has, read from its bytes without rendering it: its page objects
 * (`/Type /Page`), in the file's body and in its Flate-compressed object streams (`/Type /ObjStm`,
 * PDF 1.5 and later, where most producers now put them), each object number once: a file updated
 * incrementally (annotated, signed) holds a page's older versions too, under the same number.
 * Undefined when no page object is found (not a PDF, an encrypted one, object streams under another
 * filter).
 */
export function pdfPageCount(pdf: Buffer): number | undefined {
  // latin1 maps each byte to one character, so offsets in the text are offsets in the bytes.
  const text = pdf.toString('latin1');
  const pages = new Set<string>();
  const body = objectStarts(text);
  for (const at of matchesOf(text)) pages.add(objectAt(body, at) ?? `@${at}`);
  let streams = 0;
  for (let at = text.indexOf('/ObjStm'); at >= 0 && streams < MAX_OBJECT_STREAMS; at = text.indexOf('/ObjStm', at + 7)) {
    streams++;
    const data = streamData(pdf, text, at);
    if (!data) continue;
    const content = inflated(data);
    const objects = streamObjects(content, firstOffset(text, at));
    for (const offset of matchesOf(content)) pages.add(objectAt(objects, offset) ?? `${at}@${offset}`);
  }
  return pages.size > 0 ? pages.size : undefined;
}

/** Where each page object's `/Type /Page` stands in `text`. */
function matchesOf(text: string): number[] {
  return Array.from(text.matchAll(PAGE_TYPE), (m) => m.index);
}

/** Object numbers and where each object starts, in order. */
type ObjectStarts = Array<{ start: number; number: string }>;

function objectStarts(text: string): ObjectStarts {
  return Array.from(text.matchAll(OBJECT_HEADER), (m) => ({ start: m.index, number: m[1] }));
}

/** The number of the object holding offset `at`: the last that starts at or before it. */
function objectAt(objects: ObjectStarts, at: number): string | undefined {
  let low = 0;
  let high = objects.length - 1;
  let found: string | undefined;
  while (low <= high) {
    const mid = (low + high) >> 1;
    if (objects[mid].start <= at) {
      found = objects[mid].number;
      low = mid + 1;
    } else high = mid - 1;
  }
  return found;
}

/** The `/First` of the object stream whose dictionary holds `at`: where its objects begin, after its header. */
function firstOffset(text: string, at: number): number | undefined {
  const open = text.lastIndexOf('<<', at);
  const end = text.indexOf('stream', at);
  const first = /\/First\s+(\d+)/.exec(text.slice(open < 0 ? at : open, end < 0 ? at + 256 : end));
  return first ? Number(first[1]) : undefined;
}

/** An object stream's objects: its header's pairs (object number, offset from `/First`), as starts in its content. */
function streamObjects(content: string, first: number | undefined): ObjectStarts {
  if (first === undefined) return [];
  const numbers = content.slice(0, first).trim().split(/\s+/);
  const objects: ObjectStarts = [];
  for (let i = 0; i + 1 < numbers.length; i += 2) objects.push({ start: first + Number(numbers[i + 1]), number: numbers[i] });
  return objects.sort((a, b) => a.start - b.start);
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
