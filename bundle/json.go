package bundle

import "github.com/vouch-attest/vouch/internal/strictjson"

// maxJSONDepth bounds the nesting of objects and arrays. A version 1
// bundle nests four levels deep; the envelope two.
const maxJSONDepth = 16

// decodeStrict decodes signed or shared JSON into v, rejecting duplicate
// members (also in another case), member names spelled in another case
// than the schema's, nesting deeper than maxJSONDepth and data after the
// value. encoding/json keeps the last duplicate and ignores case, while
// other readers differ, so such a bundle could mean different things to
// a reviewer and to vouch. allowUnknown accepts members of no field, for
// formats written by other tools.
func decodeStrict(data []byte, v any, allowUnknown bool) error {
	return strictjson.Decode(data, v, strictjson.Options{MaxDepth: maxJSONDepth, AllowUnknown: allowUnknown})
}
