/**
 * Character dictionaries of CTC recognisers (`--keys FILE`), PaddleOCR's format: one character a line, in class
 * order (ppocr_keys_v1.txt, en_dict.txt). PaddleOCR's CTCLabelDecode puts the blank first (class 0) and, with
 * `use_space_char: True` (the PP-OCR rec configs' default), appends a space as the last class; a dictionary whose
 * last line is a space already holds it.
 */
import { UserError } from '../../../errors.js';
import { READ_LIMITS, readUserFile } from '../../../util/fs.js';

/** The lines of a keys file: one character (or character sequence) each; a line holding one space is the space. */
export async function readKeys(file: string): Promise<string[]> {
  const bytes = await readUserFile(file, 'The keys file', READ_LIMITS.labels);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`The keys file ${file} is not UTF-8 text.`, { hint: 'Keys files list one character a line, in UTF-8 (as PaddleOCR\'s ppocr_keys_v1.txt).' });
  }
  return parseKeys(text, file);
}

export function parseKeys(text: string, file: string): string[] {
  if (text.startsWith('\ufeff')) text = text.slice(1);
  const lines = text.split('\n');
  // The newline that ends the last line does not start another one.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new UserError(`The keys file ${file} is empty.`, { hint: 'List the recogniser\'s characters, one a line, in class order.' });
  return lines.map((raw, i) => {
    // Only the line ending is removed: a line of one space is the space character.
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') {
      throw new UserError(`${file}:${i + 1}: empty line; a keys file has one character a line.`, { hint: 'Remove the empty line (a space character is a line holding one space).' });
    }
    return line;
  });
}

/**
 * The text of each class for an output of `classes` classes: '' for the blank, the keys in order for the others.
 * `classes` may be the keys plus the blank, or plus the blank and PaddleOCR's appended space (use_space_char).
 */
export function resolveKeys(keys: readonly string[], classes: number, blank: number, what: { file?: string; output: string }): string[] {
  let chars = [...keys];
  if (classes === keys.length + 2 && !keys.includes(' ')) chars.push(' ');
  if (classes !== chars.length + 1) {
    throw new UserError(
      `${what.file ?? 'The keys'} ${what.file ? 'lists' : 'list'} ${keys.length} characters, but the output '${what.output}' has ${classes} classes (the blank and ${classes - 1} characters).`,
      { hint: 'Pass the dictionary the recogniser was trained with (PaddleOCR: the Global.character_dict_path of its config).' },
    );
  }
  const table: string[] = [];
  for (let k = 0; k < classes; k++) table.push(k === blank ? '' : chars[k < blank ? k : k - 1]!);
  return table;
}
