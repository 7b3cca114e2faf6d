"""Checks on uploaded files before anything is stored: name, size, and type by content.

Pure: nothing here writes. A file that fails a check is refused with a reason in
Vietnamese; the upload route stores nothing of a request in which any file was refused,
and passes the accepted ones to ``record_submission`` (the one path every submission takes).

The type is read from the file's first bytes (its "magic"), never from the name alone:
PDF (``%PDF-``), PNG, JPEG, the zip-based Office formats (DOCX holds ``word/``, XLSX holds
``xl/``) and the OLE2 ones (``D0 CF 11 E0``: DOC has a ``WordDocument`` stream, XLS a
``Workbook`` or ``Book`` stream); a CSV must be text. The extension must be on the allow-list
and agree with what the content is. Limits are set by ``WebSettings.max_upload_mb``. A
classification list is then read as data by ``record_submission`` before it is stored.
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
from dataclasses import dataclass

from kiemdiem.submission import display_filename

MAX_FILES = 20  # files in one submission
MAX_NAME_LENGTH = 255

# extension -> the type its content must be
ALLOWED_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".doc": "doc",
    ".xlsx": "xlsx",
    ".xls": "xls",
    ".csv": "csv",  # classification lists (read as data); its content is checked as text
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".png": "png",
}
TYPE_NAMES: dict[str, str] = {
    "pdf": "PDF",
    "docx": "Word (DOCX)",
    "doc": "Word 97-2003 (DOC)",
    "xlsx": "Excel (XLSX)",
    "xls": "Excel 97-2003 (XLS)",
    "csv": "CSV (văn bản)",
    "jpg": "ảnh JPG",
    "png": "ảnh PNG",
}
CONTENT_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "doc": "application/msword",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xls": "application/vnd.ms-excel",
    "csv": "text/csv",
    "jpg": "image/jpeg",
    "png": "image/png",
}
ALLOWED_LIST = "PDF, DOCX, DOC, XLSX, XLS, CSV, JPG, PNG"
ACCEPT_ATTRIBUTE = ",".join(ALLOWED_EXTENSIONS)  # for <input type=file accept=...>

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
PDF_MAGIC = b"%PDF-"
_LEADING_NOISE = b"\xef\xbb\xbf \t\r\n\x00"
_WORD_STREAM = "WordDocument".encode("utf-16-le")
_EXCEL_STREAMS = ("Workbook".encode("utf-16-le"), "Book\x00".encode("utf-16-le"))


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one uploaded file. ``reason`` is None when the file is acceptable."""

    original_name: str
    filename: str  # the name it is stored under
    size: int
    kind: str | None  # detected type (pdf, docx, ...)
    content_type: str | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


def format_size(size: int) -> str:
    """A size for people (pages and messages): B, KB or MB with a decimal comma."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f}".replace(".", ",") + " KB"
    return f"{size / (1024 * 1024):.1f}".replace(".", ",") + " MB"


def _bytes(size: int) -> str:
    return f"{size:,}".replace(",", ".") + " byte"


def check_filename(name: str) -> str | None:
    """Why a file name is refused, or None. Paths and traversal are refused, not silently cut."""
    if not name or not name.strip():
        return "tệp không có tên"
    if len(name) > MAX_NAME_LENGTH:
        return f"tên tệp quá dài (tối đa {MAX_NAME_LENGTH} ký tự)"
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        return "tên tệp chứa ký tự điều khiển"
    if "/" in name or "\\" in name or name.strip() in (".", "..") or ".." in name.replace("\\", "/").split("/"):
        return "tên tệp không hợp lệ: không được chứa đường dẫn thư mục (/, \\ hoặc ..)"
    if name.strip().startswith("."):
        return "tên tệp không được bắt đầu bằng dấu chấm"
    return None


def extension_of(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower().strip() if dot > 0 else ""


def sniff(data: bytes) -> str | None:
    """The allowed type the content is, or None."""
    head = data[:1024]
    if head.lstrip(_LEADING_NOISE).startswith(PDF_MAGIC):
        return "pdf"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpg"
    if data.startswith(ZIP_MAGIC):
        return _sniff_zip(data)
    if data.startswith(OLE2_MAGIC):
        if _WORD_STREAM in data:
            return "doc"
        if any(stream in data for stream in _EXCEL_STREAMS):
            return "xls"
    return None


def _sniff_text(data: bytes) -> str | None:
    """"csv" for text (no NUL byte, not a known binary type, not markup); its columns and
    encoding are checked when the list is read."""
    head = data[:4096]
    if b"\x00" in head or sniff(data) is not None or describe_content(data) == "HTML/XML":
        return None
    return "csv"


def _sniff_zip(data: bytes) -> str | None:
    """DOCX or XLSX by the parts inside (only the central directory is read, nothing is unpacked)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    if "[Content_Types].xml" not in names:
        return None
    if any(n.startswith("word/") for n in names):
        return "docx"
    if any(n.startswith("xl/") for n in names):
        return "xlsx"
    return None


def describe_content(data: bytes) -> str:
    """A guess at what a refused file really is, for the message."""
    head = data[:512].lstrip(_LEADING_NOISE).lower()
    if data.startswith(b"MZ"):
        return "tệp chương trình (EXE/DLL)"
    if data.startswith(b"\x7fELF"):
        return "tệp chương trình (ELF)"
    if head.startswith((b"<!doctype html", b"<html", b"<script", b"<?xml", b"<svg", b"<")):
        return "HTML/XML"
    if data.startswith(ZIP_MAGIC):
        return "tệp nén ZIP"
    if data.startswith(OLE2_MAGIC):
        return "tệp Office cũ không nhận dạng được"
    if data.startswith(b"Rar!") or data.startswith(b"7z\xbc\xaf"):
        return "tệp nén"
    return "không nhận dạng được"


def check_file(name: str, data: bytes, max_bytes: int, *, declared_size: int | None = None) -> FileCheck:
    """Check one file; ``data`` may be cut at ``max_bytes + 1`` (then ``declared_size`` is unknown)."""
    size = declared_size if declared_size is not None else len(data)
    stored_name = display_filename(name) if name else "tep"

    def refused(reason: str, kind: str | None = None) -> FileCheck:
        return FileCheck(name, stored_name, size, kind, None, reason)

    reason = check_filename(name)
    if reason:
        return refused(reason)
    ext = extension_of(name)
    if ext not in ALLOWED_EXTENSIONS:
        shown = f"'{ext}'" if ext else "không có phần mở rộng"
        return refused(f"loại tệp không được nhận ({shown}); chỉ nhận {ALLOWED_LIST}")
    if size == 0:
        return refused("tệp rỗng")
    if size > max_bytes:
        shown, limit = format_size(size), format_size(max_bytes)
        if shown == limit:  # just over the limit: rounded, both would read the same
            shown, limit = _bytes(size), f"{_bytes(max_bytes)} = {limit}"
        return refused(f"tệp quá lớn ({shown}; tối đa {limit})")
    expected = ALLOWED_EXTENSIONS[ext]
    kind = _sniff_text(data) if expected == "csv" else sniff(data)
    if kind is None:
        return refused(
            f"nội dung tệp không phải {TYPE_NAMES[expected]} như phần mở rộng {ext} cho biết "
            f"(nội dung: {describe_content(data)}); chỉ nhận {ALLOWED_LIST}"
        )
    if kind != expected:
        good_ext = next(e for e, k in ALLOWED_EXTENSIONS.items() if k == kind)
        return refused(
            f"nội dung là {TYPE_NAMES[kind]} nhưng tên tệp có đuôi {ext}; hãy đổi tên thành …{good_ext}", kind
        )
    return FileCheck(name, stored_name, size, kind, CONTENT_TYPES[kind], None)
