// Package jinja is a Jinja2 template engine for LLM chat templates. It
// follows llama.cpp's own Jinja engine (common/jinja, which itself follows
// huggingface.js) wherever that differs from Python Jinja2, because chat
// prompts must match llama.cpp byte for byte:
//
//   - lstrip_blocks and trim_blocks are always on, "-" markers strip all
//     whitespace on their side, CRLF becomes LF and one trailing newline of
//     the template is dropped;
//   - {{ }} prints nothing for none, undefined and dicts, and prints a
//     list's items back to back; floats print with C's %f minus trailing
//     zeros ("2.0", "0.3");
//   - "x is none" is also true for an undefined x; the default filter also
//     replaces none; attribute access on undefined gives undefined;
//   - tojson uses Python's json.dumps spacing (", " and ": "), keeps key
//     order and non-ASCII text, and prints floats like C++ (%g);
//   - a missing value next to a string in + or ~ counts as "".
//
// Where llama.cpp rejects something Python Jinja accepts (negative string
// indices, string comparison, loops over strings, "//" and "**", macro
// keyword arguments, ...), the Python behaviour is
// implemented, so no template that works in llama.cpp fails here.
//
// Not supported: {% call %} blocks, {% raw %}, recursive loops, template
// inheritance and includes (chat templates do not use them).
package jinja
