package xmap

import "strings"

// A FolderRef names a folder in a request, by id or by name: exactly one is set. Ids are
// stable across renames, so a syncing client uses them; names are for people.
type FolderRef struct {
	ID   string // folder-id attribute
	Name string // folder attribute
}

func (r FolderRef) String() string {
	if r.ID != "" {
		return "folder-id " + r.ID
	}
	return "folder " + r.Name
}

// A Role marks a system folder.
type Role string

const (
	RoleInbox  Role = "inbox"
	RoleSent   Role = "sent"
	RoleDrafts Role = "drafts"
	RoleTrash  Role = "trash"
	RoleJunk   Role = "junk"
)

// SystemFolders are the folders every account has, by name, in listing order. They cannot
// be renamed or deleted, and no other folder may take their names (compared ignoring case).
var SystemFolders = []struct {
	Name string
	Role Role
}{
	{"INBOX", RoleInbox},
	{"Sent", RoleSent},
	{"Drafts", RoleDrafts},
	{"Trash", RoleTrash},
	{"Junk", RoleJunk},
}

// ReservedFolderName reports whether name equals a system folder's name, ignoring ASCII
// case: such a name cannot be given to a created or renamed folder.
func ReservedFolderName(name string) bool {
	for _, f := range SystemFolders {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// A Folder is a folder with its message counts.
type Folder struct {
	ID     string
	Name   string
	Role   Role // empty for user folders
	Total  int  // messages in the folder
	Unseen int  // of which without \Seen
}

func (f *Folder) encode(e *enc) {
	e.start("folder")
	e.attr("id", f.ID)
	e.attr("name", f.Name)
	e.attr("role", string(f.Role))
	e.attrNum("total", int64(f.Total))
	e.attrNum("unseen", int64(f.Unseen))
	e.end("folder")
}

func (f *Folder) decode(e *elem) {
	e.noKids()
	f.ID = e.id("id", true)
	f.Name = e.folderName("name")
	if r, ok := e.attr("role"); ok {
		switch Role(r) {
		case RoleInbox, RoleSent, RoleDrafts, RoleTrash, RoleJunk:
			f.Role = Role(r)
		default:
			e.fail(CodeBadRequest, "unknown role %q", clip(r))
		}
	}
	f.Total = int(e.num("total", true, 0, 1<<53))
	f.Unseen = int(e.num("unseen", true, 0, 1<<53))
}

// decodeFolderChild decodes the single <folder> child of a result.
func decodeFolderChild(e *elem, f *Folder) {
	seen := false
	e.each(func(c *elem) {
		if c.n.name != "folder" {
			c.unknownChild()
			return
		}
		if c.once(&seen) {
			f.decode(c)
		}
	})
	if !seen {
		e.fail(CodeBadRequest, "missing <folder>")
	}
}

// ListFolders lists every folder with its counts: system folders first, in the order of
// SystemFolders, then the others by name.
type ListFolders struct{}

func (*ListFolders) Name() string   { return "list-folders" }
func (*ListFolders) decode(e *elem) { e.noKids() }
func (*ListFolders) encode(e *enc)  {}

// ListFoldersResult answers ListFolders.
type ListFoldersResult struct {
	Folders []Folder
}

func (*ListFoldersResult) Name() string { return "list-folders" }

func (r *ListFoldersResult) encode(e *enc) {
	for i := range r.Folders {
		r.Folders[i].encode(e)
	}
}

func (r *ListFoldersResult) decode(e *elem) {
	e.each(func(c *elem) {
		if c.n.name != "folder" {
			c.unknownChild()
			return
		}
		var f Folder
		f.decode(c)
		r.Folders = append(r.Folders, f)
	})
}

// CreateFolder creates a user folder. A name already used (or a system name) is a conflict.
type CreateFolder struct {
	FolderName string
}

func (*CreateFolder) Name() string { return "create-folder" }

func (c *CreateFolder) decode(e *elem) {
	e.noKids()
	c.FolderName = e.folderName("name")
}

func (c *CreateFolder) encode(e *enc) { e.attr("name", c.FolderName) }

// CreateFolderResult answers CreateFolder with the new folder.
type CreateFolderResult struct {
	Folder Folder
}

func (*CreateFolderResult) Name() string     { return "create-folder" }
func (r *CreateFolderResult) encode(e *enc)  { r.Folder.encode(e) }
func (r *CreateFolderResult) decode(e *elem) { decodeFolderChild(e, &r.Folder) }

// RenameFolder renames a user folder; system folders give denied.
type RenameFolder struct {
	Folder  FolderRef
	NewName string
}

func (*RenameFolder) Name() string { return "rename-folder" }

func (c *RenameFolder) decode(e *elem) {
	e.noKids()
	c.Folder = e.folderRef()
	c.NewName = e.folderName("name")
}

func (c *RenameFolder) encode(e *enc) {
	e.folderRef(c.Folder)
	e.attr("name", c.NewName)
}

// RenameFolderResult answers RenameFolder with the renamed folder.
type RenameFolderResult struct {
	Folder Folder
}

func (*RenameFolderResult) Name() string     { return "rename-folder" }
func (r *RenameFolderResult) encode(e *enc)  { r.Folder.encode(e) }
func (r *RenameFolderResult) decode(e *elem) { decodeFolderChild(e, &r.Folder) }

// DeleteFolder deletes a user folder; its messages move to Trash. System folders give denied.
type DeleteFolder struct {
	Folder FolderRef
}

func (*DeleteFolder) Name() string { return "delete-folder" }

func (c *DeleteFolder) decode(e *elem) {
	e.noKids()
	c.Folder = e.folderRef()
}

func (c *DeleteFolder) encode(e *enc) { e.folderRef(c.Folder) }

// DeleteFolderResult answers DeleteFolder.
type DeleteFolderResult struct{}

func (*DeleteFolderResult) Name() string   { return "delete-folder" }
func (*DeleteFolderResult) encode(*enc)    {}
func (*DeleteFolderResult) decode(e *elem) { e.noKids() }
