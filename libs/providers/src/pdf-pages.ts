import { constants, inflateSync } from 'node:zlib';

/**
 * A page object's dictionary entry: `/Type /Page`, with or without the space, and not `/Pages`
 * (the page tree's inner nodes) or any other name that begins so.
 */
const PAGE_TYPE = /\/Type\s*\/Page(?![A-Za-z0-9#._-])/g;
/**
 * An indirect object's header in a file's body: `12 0 obj`. Bounded digit runs, never starting inside
 * one, so a long run of digits costs linear time, not quadratic.
 */
const OBJECT_HEADER = /(?<!\d)(\d{1,10})\s+\d{1,5}\s+obj\b/g;
/** `/ObjStm` names read per PDF at most: a file with more is counted from the first ones. */
const MAX_OBJECT_STREAM_NAMES = 1_024;
/** How far from its `/ObjStm` name an object stream's dictionary may reach (its `/First`, its `stream` keyword). */
const DICTIONARY_REACH = 4_096;
/** The most of an object stream's header read (its pairs of object numbers and offsets): some 5,000 objects. */
const MAX_HEADER_CHARS = 1 << 16;
/** The most bytes one object stream is inflated to (they hold object dictionaries: kilobytes, as a rule). */
const MAX_INFLATED_BYTES = 4 << 20;

/**
 * How much inflating one request's PDFs may do: shared by every PDF of the request, so no number of
 * them (nor of streams in them, nor a deflate bomb) makes the count cost more than this.
 */
export class PdfWork {
  constructor(public inflateBytes = 16 << 20) {}
}

/**
 * Page objects counted per object number at most: an incremental update rewrites a page a few times
 * at most, while a header that gives many objects one number (to hide them) gets them counted still.
 */
const VERSIONS_PER_PAGE = 4;

/**
 * How many pages a PDF has, read from its bytes without rendering it: its page objects
 * (`/Type /Page`), in the file's body and in its Flate-compressed object streams (`/Type /ObjStm`,
 * PDF 1.5 and later, where most producers now put them), each object number once: a file updated
 * incrementally (annotated, signed) holds a page's older versions too, under the same number (but
 * never fewer than a quarter of the page objects found, see {@link VERSIONS_PER_PAGE}).
 * Undefined when no page object is found (not a PDF, an encrypted one, object streams under another
 * filter, a file written to hide its pages). Linear in the file's size; the inflating is bounded by `work`.
 */
export function pdfPageCount(pdf: Buffer, work = new PdfWork()): number | undefined {
  // latin1 maps each byte to one character, so offsets in the text are offsets in the bytes.
  const text = pdf.toString('latin1');
  const pages = new Set<string>();
  let found = 0;
  const body = objectStarts(text);
  for (const at of matchesOf(text)) {
    found++;
    pages.add(objectAt(body, at) ?? `@${at}`);
  }
  const ends = positionsOf(text, 'endstream');
  const read = new Set<number>();
  let names = 0;
  for (let at = text.indexOf('/ObjStm'); at >= 0 && names < MAX_OBJECT_STREAM_NAMES; at = text.indexOf('/ObjStm', at + 7)) {
    names++;
    const stream = streamAt(text, at, ends);
    // Each stream once: many `/ObjStm` names before one stream must not inflate it again and again.
    if (!stream || read.has(stream.start) || work.inflateBytes <= 0) continue;
    read.add(stream.start);
    const content = inflated(pdf.subarray(stream.start, stream.end), work);
    const objects = streamObjects(content, stream.first);
    for (const offset of matchesOf(content)) {
      found++;
      pages.add(objectAt(objects, offset) ?? `${stream.start}@${offset}`);
    }
  }
  return found > 0 ? Math.max(pages.size, Math.ceil(found / VERSIONS_PER_PAGE)) : undefined;
}

/** Where each page object's `/Type /Page` stands in `text`. */
function matchesOf(text: string): number[] {
  return Array.from(text.matchAll(PAGE_TYPE), (m) => m.index);
}

/** Every place `word` starts in `text`, in order (one pass). */
function positionsOf(text: string, word: string): number[] {
  const out: number[] = [];
  for (let at = text.indexOf(word); at >= 0; at = text.indexOf(word, at + word.length)) out.push(at);
  return out;
}

/** The first of the sorted `positions` at or after `from`, if any. */
function firstFrom(positions: number[], from: number): number | undefined {
  let low = 0;
  let high = positions.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (positions[mid] < from) low = mid + 1;
    else high = mid;
  }
  return positions[low];
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

/**
 * The object stream whose dictionary names `/ObjStm` at `at`: its `/First` (where its objects begin,
 * after its header) and its raw data, from the end of line after its `stream` keyword to its
 * `endstream` (a `/Length` given by reference needs no lookup so). Only a dictionary within
 * {@link DICTIONARY_REACH} of the name is read.
 */
function streamAt(text: string, at: number, ends: number[]): { first: number | undefined; start: number; end: number } | undefined {
  const window = text.slice(Math.max(0, at - DICTIONARY_REACH), at + DICTIONARY_REACH);
  const offset = Math.max(0, at - DICTIONARY_REACH);
  const keyword = window.indexOf('stream', at - offset);
  if (keyword < 0) return undefined;
  const open = window.lastIndexOf('<<', at - offset);
  const first = /\/First\s+(\d{1,9})/.exec(window.slice(Math.max(0, open), keyword));
  let start = offset + keyword + 6;
  if (text.charCodeAt(start) === 0x0d) start++;
  if (text.charCodeAt(start) === 0x0a) start++;
  const end = firstFrom(ends, start);
  return end === undefined ? undefined : { first: first ? Number(first[1]) : undefined, start, end };
}

/** An object stream's objects: its header's pairs (object number, offset from `/First`), as starts in its content. */
function streamObjects(content: string, first: number | undefined): ObjectStarts {
  if (first === undefined) return [];
  const numbers = content.slice(0, Math.min(first, MAX_HEADER_CHARS)).trim().split(/\s+/);
  const objects: ObjectStarts = [];
  for (let i = 0; i + 1 < numbers.length; i += 2) objects.push({ start: first + Number(numbers[i + 1]), number: numbers[i] });
  return objects.sort((a, b) => a.start - b.start);
}

/**
 * A Flate stream's content as text, within what `work` has left (charged what was inflated: all that
 * was allowed when it inflated past it, its own size when it was not Flate data); '' when it is not
 * one, is damaged, or inflates past the limit.
 */
function inflated(data: Buffer, work: PdfWork): string {
  const allowed = Math.min(MAX_INFLATED_BYTES, work.inflateBytes);
  try {
    // A sync flush at the end: the end of line before `endstream` and a stream cut short both still read.
    const content = inflateSync(data, { maxOutputLength: allowed, finishFlush: constants.Z_SYNC_FLUSH });
    work.inflateBytes -= content.length;
    return content.toString('latin1');
  } catch (error) {
    work.inflateBytes -= (error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE' ? allowed : data.length;
    return '';
  }
}
