"""The catalogue of documents a plan may require, and the Vietnamese vocabulary of the domain."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DocumentType:
    code: str
    name: str
    form: str = ""  # the template ("Mẫu") it follows, if any
    structured: bool = False  # parsed as data (results), not only stored


DOCUMENTS: dict[str, DocumentType] = {
    d.code: d
    for d in [
        DocumentType("du_thao_bao_cao_kiem_diem", "Dự thảo báo cáo kiểm điểm tập thể (gửi trước hội nghị)", "Mẫu 01"),
        DocumentType("y_kien_dong_y_bao_cao", "Ý kiến đồng ý của thường trực cấp ủy cấp trên (nơi có gợi ý kiểm điểm)"),
        DocumentType("bao_cao_kiem_diem_tap_the", "Báo cáo kiểm điểm tập thể", "Mẫu 01"),
        DocumentType("ban_kiem_diem_ca_nhan", "Bản kiểm điểm cá nhân", "Mẫu 02"),
        DocumentType("nhan_xet_noi_cu_tru", "Bản nhận xét của cấp ủy nơi cư trú", "Mẫu 3-213"),
        DocumentType("nhan_xet_noi_sinh_hoat_tam_thoi", "Nhận xét của chi bộ nơi sinh hoạt tạm thời"),
        DocumentType("phieu_phan_tich_chat_luong", "Phiếu phân tích chất lượng và đánh giá xếp loại tổ chức cơ sở đảng", "Mẫu 3đ"),
        DocumentType("bien_ban_hoi_nghi", "Biên bản hội nghị kiểm điểm, đánh giá, xếp loại"),
        DocumentType("tong_hop_xep_loai_dang_vien", "Tổng hợp kết quả đánh giá, xếp loại chất lượng đảng viên", structured=True),
        DocumentType("ket_qua_xep_loai_chi_bo", "Kết quả đánh giá, xếp loại chất lượng chi bộ", structured=True),
        DocumentType("quyet_dinh_xep_loai", "Quyết định công nhận mức xếp loại chất lượng tổ chức đảng, đảng viên", structured=True),
        DocumentType("danh_sach_xep_loai_dang_vien", "Danh sách xếp loại đảng viên"),
        DocumentType("bieu_mau_thong_ke", "Biểu mẫu thống kê kết quả đánh giá, xếp loại"),
        DocumentType("bao_cao_ket_qua_kiem_diem", "Báo cáo kết quả kiểm điểm, đánh giá, xếp loại"),
        DocumentType("danh_sach_xep_loai_can_bo", "Danh sách xếp loại cấp ủy, cán bộ lãnh đạo, quản lý"),
        DocumentType("phieu_bo_sung_ly_lich", "Phiếu bổ sung hồ sơ lý lịch hằng năm"),
        DocumentType("ke_khai_tai_san_bo_sung", "Bản kê khai tài sản, thu nhập bổ sung"),
        DocumentType("ke_hoach_khac_phuc", "Kế hoạch khắc phục hạn chế, khuyết điểm"),
        DocumentType("ban_cam_ket", "Bản cam kết tu dưỡng, rèn luyện, phấn đấu"),
        DocumentType("bao_cao_thanh_tich", "Báo cáo thành tích"),
        DocumentType("bao_cao_tom_tat_thanh_tich", "Báo cáo tóm tắt thành tích"),
        DocumentType("bien_ban_xet_khen_thuong", "Biên bản họp xét khen thưởng"),
        DocumentType("to_trinh_khen_thuong", "Tờ trình đề nghị khen thưởng (kèm danh sách trích ngang)"),
        DocumentType("bao_cao_tong_ket_xay_dung_dang", "Báo cáo tổng kết công tác xây dựng Đảng"),
        DocumentType("bien_ban_hoi_nghi_tong_ket", "Biên bản hội nghị tổng kết công tác xây dựng Đảng"),
        DocumentType("van_ban_khac", "Các văn bản khác"),
    ]
}

UNIT_KINDS: dict[str, str] = {
    "cap_tren_co_so": "Đảng bộ cấp trên cơ sở",
    "dang_bo_co_so": "Đảng bộ cơ sở",
    "chi_bo_co_so": "Chi bộ cơ sở",
    "dang_bo_bo_phan": "Đảng bộ bộ phận",
    "chi_bo_truc_thuoc": "Chi bộ trực thuộc",
    "to_dang": "Tổ đảng",
}
# Members are attached to branches; a base organization is where the member quota is counted.
BRANCH_KINDS = frozenset({"chi_bo_co_so", "chi_bo_truc_thuoc"})
BASE_ORGANIZATION_KINDS = frozenset({"dang_bo_co_so", "chi_bo_co_so"})

MEMBER_STATUSES: dict[str, str] = {
    "active": "Chính thức",
    "probationary": "Dự bị",
    "exempt": "Miễn công tác và sinh hoạt đảng",
    "suspended": "Đình chỉ sinh hoạt đảng",
}
# Exempt and suspended members are neither reviewed nor classified (DESIGN §3 rule 3).
REVIEWED_STATUSES = frozenset({"active", "probationary"})

POSITIONS: dict[str, str] = {
    "bi_thu": "Bí thư",  # of the member's own branch (chi bộ): the head the rules compare with it
    "bi_thu_dang_uy": "Bí thư Đảng ủy",  # of a đảng bộ or a committee above the branch
    "cap_uy_vien_cap_tren": "Cấp ủy viên cấp trên (Tỉnh ủy viên hoặc Huyện ủy viên)",
    "pho_bi_thu": "Phó Bí thư",
    "chi_uy_vien": "Chi ủy viên",
    "dang_uy_vien": "Đảng ủy viên",
    "uy_vien_ban_thuong_vu": "Ủy viên Ban Thường vụ",
    "thu_truong": "Thủ trưởng cơ quan, đơn vị",
    "pho_thu_truong": "Phó thủ trưởng cơ quan, đơn vị",
}

LEVELS: dict[str, str] = {
    "HTXSNV": "Hoàn thành xuất sắc nhiệm vụ",
    "HTTNV": "Hoàn thành tốt nhiệm vụ",
    "HTNV": "Hoàn thành nhiệm vụ",
    "KHTNV": "Không hoàn thành nhiệm vụ",
}

RULE_SETS: dict[str, str] = {
    "132/21": "Quy định 132-QĐ/TW; Hướng dẫn 21-HD/BTCTW",
    "124/25": "Quy định 124-QĐ/TW; Hướng dẫn 25-HD/BTCTW",
    "366/43": "Quy định 366-QĐ/TW; Hướng dẫn 43-HD/BTCTW",
}
# The review years each rule set was in force for (DESIGN §3); None: still in force.
RULE_SET_YEARS: dict[str, tuple[int, int | None]] = {"132/21": (2019, 2022), "124/25": (2023, 2024), "366/43": (2025, None)}

PHASE_KINDS: dict[str, str] = {
    "prepare_reports": "Chuẩn bị báo cáo kiểm điểm",
    "branch_meeting": "Hội nghị kiểm điểm của chi bộ",
    "committee_review": "Cấp ủy xem xét, quyết định xếp loại",
    "report_upward": "Báo cáo kết quả lên cấp trên",
    "remediation": "Kế hoạch khắc phục hạn chế, khuyết điểm",
    "leaders_dossier": "Hồ sơ cán bộ lãnh đạo, quản lý",
    "summary_report": "Báo cáo tổng kết",
}

# Which members of a branch owe a per-member document.
MEMBER_SCOPES: dict[str, str] = {
    "reviewed": "Đảng viên thuộc diện kiểm điểm",
    "temporary": "Đảng viên sinh hoạt tạm thời",
    "leaders": "Cấp ủy viên, cán bộ lãnh đạo, quản lý",
    "all": "Tất cả đảng viên",
}
LEADER_POSITIONS = frozenset({"bi_thu", "bi_thu_dang_uy", "cap_uy_vien_cap_tren", "pho_bi_thu", "chi_uy_vien", "dang_uy_vien", "uy_vien_ban_thuong_vu", "thu_truong", "pho_thu_truong"})


def committee_of(name: str) -> str:
    """"Đảng bộ Sở Công Thương" -> "Đảng ủy Sở Công Thương": the committee a đảng bộ's letters go to
    and its documents are signed by; any other name as it is."""
    return "Đảng ủy" + name[len("Đảng bộ"):] if name.startswith("Đảng bộ") else name


def acts_as_itself(kind: str) -> bool:
    """A branch or a tổ đảng writes, signs and is written to as itself; a đảng bộ through its committee."""
    return kind in BRANCH_KINDS or kind == "to_dang"


def addressee(name: str, kind: str) -> str:
    """Whom a letter to a unit is addressed to: a branch itself ("Chi bộ Khuyến công"), the committee of a đảng bộ."""
    return name if acts_as_itself(kind) else committee_of(name)
