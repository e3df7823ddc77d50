package bundle

import _ "embed"

// SchemaJSON is the JSON Schema (draft 2020-12) of a version 1 bundle's
// payload, the file schema/bundle-v1.schema.json.
//
//go:embed schema/bundle-v1.schema.json
var SchemaJSON []byte
