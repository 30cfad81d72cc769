// Render Ollama TEMPLATE text with Go's text/template the way Ollama feeds it (System, Messages, Tools,
// Think, IsThinkSet; system messages collected into System; the Modelfile SYSTEM used when none is given).
// Input (stdin): JSON list of cases; output (stdout): JSON list of rendered strings.
// Tool schemas and call arguments arrive as JSON text already spelled by tuneforge (Ollama spells them with
// Go's compact json.Marshal instead); `json` is Ollama's template function of the same name.
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Raw string

func (r Raw) String() string { return string(r) }

type Function struct {
	Name      string
	Arguments Raw
}

type ToolCall struct{ Function Function }

type Message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	Thinking  string     `json:"thinking"`
	ToolCalls []ToolCall `json:"tool_calls"`
}

type Case struct {
	Template      string    `json:"template"`
	Messages      []Message `json:"messages"`
	Tools         []Raw     `json:"tools"`
	DefaultSystem string    `json:"default_system"`
	Think         *bool     `json:"think"`
}

var funcs = template.FuncMap{
	"json": func(v any) string { b, _ := json.Marshal(v); return string(b) },
}

func render(c Case) (string, error) {
	tmpl, err := template.New("t").Funcs(funcs).Parse(c.Template)
	if err != nil {
		return "", err
	}
	msgs := c.Messages
	if c.DefaultSystem != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		msgs = append([]Message{{Role: "system", Content: c.DefaultSystem}}, msgs...)
	}
	var system []string
	for _, m := range msgs {
		if m.Role == "system" {
			system = append(system, m.Content)
		}
	}
	ptrs := make([]*Message, len(msgs))
	for i := range msgs {
		ptrs[i] = &msgs[i]
	}
	data := map[string]any{
		"System": strings.Join(system, "\n\n"), "Messages": ptrs, "Tools": c.Tools, "Response": "",
		"Think": c.Think != nil && *c.Think, "IsThinkSet": c.Think != nil,
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		return "", err
	}
	return out.String(), nil
}

func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	results := make([]string, len(cases))
	for i, c := range cases {
		text, err := render(c)
		if err != nil {
			text = "ERROR: " + err.Error()
		}
		results[i] = text
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(results); err != nil {
		panic(err)
	}
}
