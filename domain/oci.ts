// The OCI distribution grammars Kiln checks names against. One source: the API's validation,
// the rules' tag rendering and the activities' tag guards all use these.

/** An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. */
export const OCI_TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
export const MAX_TAG_LENGTH = 128;

/** Characters a tag may contain anywhere but first. */
export const OCI_TAG_CHAR_RE = /^[A-Za-z0-9._-]$/;
