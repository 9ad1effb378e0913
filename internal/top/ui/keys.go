package ui

import "charm.land/bubbles/v2/key"

// keyMap is top's keys, htop's and bpftop's where they have one.
type keyMap struct {
	Up, Down, PageUp, PageDown, Home, End   key.Binding
	Details, Sort, Reverse, Filter, Clear   key.Binding
	Pause, Slower, Faster, Kill, Help, Quit key.Binding
}

var keys = keyMap{
	Up:       key.NewBinding(key.WithKeys("up", "k")),
	Down:     key.NewBinding(key.WithKeys("down", "j")),
	PageUp:   key.NewBinding(key.WithKeys("pgup")),
	PageDown: key.NewBinding(key.WithKeys("pgdown")),
	Home:     key.NewBinding(key.WithKeys("home", "g")),
	End:      key.NewBinding(key.WithKeys("end", "G")),
	Details:  key.NewBinding(key.WithKeys("enter")),
	Sort:     key.NewBinding(key.WithKeys("s")),
	Reverse:  key.NewBinding(key.WithKeys("S")),
	Filter:   key.NewBinding(key.WithKeys("/")),
	Clear:    key.NewBinding(key.WithKeys("esc")),
	Pause:    key.NewBinding(key.WithKeys("space")),
	Slower:   key.NewBinding(key.WithKeys("+", "=")),
	Faster:   key.NewBinding(key.WithKeys("-", "_")),
	Kill:     key.NewBinding(key.WithKeys("K")),
	Help:     key.NewBinding(key.WithKeys("?", "h", "f1")),
	Quit:     key.NewBinding(key.WithKeys("q", "ctrl+c")),
}
