"""Deterministic synthetic organizations: writes the units.csv and members.csv import files.

``generate(preset, seed, out_dir)`` builds one of the PRESETS (sizes from DESIGN.md section 6):

- ``sct``: the Đảng bộ Sở Công Thương of plan 187-KH/ĐU (10 branches, ~150 members, with the
  committee members the plan names, so its assignments can be matched by full name);
- ``khoi``: a provincial Đảng bộ Khối (90–130 base organizations, 270–400 branches,
  4,000–7,000 members);
- ``province``: a whole province (~1,000 base organizations, ~3,000 branches, ~90,000 members);
- ``nation``: 63 provinces (~52,000 base organizations, ~250,000 branches, ~5.6 million members).

Rows are written as they are generated (parents before children), so memory stays flat at any
size. The only randomness is one ``random.Random(seed)``: the same seed gives byte-identical
files. "Branch" means a unit that holds members: ``chi_bo_co_so`` or ``chi_bo_truc_thuoc``.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import os
import random
import tempfile
import unicodedata
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

UNIT_COLUMNS = ("code", "name", "kind", "parent", "emails")
MEMBER_COLUMNS = (
    "member_id", "full_name", "unit", "email", "joined_on", "status", "temporary_unit", "positions",
)
BRANCH_KINDS = ("chi_bo_co_so", "chi_bo_truc_thuoc")
POSITIONS = ("bi_thu", "pho_bi_thu", "chi_uy_vien", "dang_uy_vien", "thu_truong", "pho_thu_truong")

_POSITION_ORDER = {p: i for i, p in enumerate(POSITIONS)}
_EARLIEST_JOIN = dt.date(1975, 1, 1).toordinal()
_VETERAN_JOIN = (dt.date(1985, 1, 1).toordinal(), dt.date(2005, 12, 31).toordinal())
_MIN_MEMBERS = 3            # a chi bộ needs at least three members
_TEMPORARY_SHARE = 0.02     # members active temporarily in another branch
_NO_EMAIL_SHARE = 0.20      # ordinary members without an email address
_RECENT_BRANCHES = 64       # ring of earlier branches a temporary_unit is drawn from


@dataclass(frozen=True)
class GeneratedFiles:
    units: Path
    members: Path
    unit_count: int
    member_count: int
    branch_count: int


# --------------------------------------------------------------------------- names of people

_FAMILY = (
    ("Nguyễn", 38.0), ("Trần", 11.5), ("Lê", 9.5), ("Phạm", 7.0), ("Hoàng", 4.0), ("Huỳnh", 1.5),
    ("Phan", 4.5), ("Vũ", 2.5), ("Võ", 3.5), ("Đặng", 2.1), ("Bùi", 2.0), ("Đỗ", 1.4), ("Hồ", 1.3),
    ("Ngô", 1.3), ("Dương", 1.0), ("Lý", 0.5), ("Đinh", 0.8), ("Trương", 0.8), ("Trịnh", 0.6),
    ("Đoàn", 0.6), ("Đào", 0.5), ("Lâm", 0.5), ("Mai", 0.5), ("Hà", 0.5), ("Cao", 0.4),
    ("Lương", 0.4), ("Lưu", 0.3), ("Phùng", 0.3), ("Nông", 0.3), ("Tạ", 0.2), ("Chu", 0.2),
    ("Tô", 0.2), ("Triệu", 0.2), ("Vương", 0.2), ("Thái", 0.2), ("Quách", 0.1), ("Kiều", 0.1),
    ("Lò", 0.1),
)
_FAMILY_NAMES = tuple(n for n, _ in _FAMILY)
_FAMILY_CUM = tuple(sum(w for _, w in _FAMILY[: i + 1]) for i in range(len(_FAMILY)))
_MALE_MIDDLE = (
    "Đức", "Minh", "Quang", "Hữu", "Xuân", "Công", "Thành", "Ngọc", "Đình", "Trọng", "Anh", "Tiến",
    "Mạnh", "Duy", "Thanh", "Hoàng", "Huy", "Sỹ", "Bá", "Quốc", "Việt", "Hồng", "Văn",
)
_FEMALE_MIDDLE = (
    "Thu", "Ngọc", "Thanh", "Minh", "Hồng", "Kim", "Phương", "Thùy", "Mai", "Lan", "Hải", "Bích",
    "Diệu", "Khánh", "Thảo", "Hoài", "Quỳnh",
)
_MALE_GIVEN = (
    "Hùng", "Dũng", "Tuấn", "Minh", "Hải", "Nam", "Long", "Thắng", "Cường", "Sơn", "Hoàng", "Quân",
    "Phong", "Trung", "Tiến", "Đức", "Hiếu", "Thành", "Bình", "Huy", "Khánh", "Lâm", "Tùng", "Toàn",
    "Việt", "Hưng", "Chiến", "Quang", "Thanh", "Tài", "An", "Vinh", "Phúc", "Lợi", "Tâm", "Hòa",
    "Kiên", "Thái", "Đạt", "Nghĩa", "Duy", "Trường", "Sang", "Bảo", "Định", "Thịnh", "Công", "Lực",
    "Hậu", "Khoa", "Tú", "Thuận", "Hiệp", "Phương", "Giang", "Vũ", "Hà", "Tân", "Lộc", "Chính",
)
_FEMALE_GIVEN = (
    "Hương", "Lan", "Hà", "Hoa", "Mai", "Linh", "Trang", "Thảo", "Ngọc", "Huyền", "Nga", "Hằng",
    "Thủy", "Phương", "Yến", "Loan", "Dung", "Vân", "Hạnh", "Nhung", "Oanh", "Thúy", "Liên", "Hiền",
    "Hồng", "Quỳnh", "Anh", "Giang", "Nhàn", "Tâm", "Thu", "Diệp", "Xuân", "Chi", "Trinh",
    "Nguyệt", "Uyên", "Thơ", "Ly", "Tuyết", "Hậu", "Duyên", "Hiên", "Lý", "Vy", "Nhi", "Thắm",
)

# --------------------------------------------------------------------------- places

_PLACE_FIRST = (
    "Tân", "An", "Hòa", "Phú", "Bình", "Long", "Thạnh", "Xuân", "Đông", "Tây", "Nam", "Bắc", "Quảng",
    "Thanh", "Hưng", "Vĩnh", "Phước", "Mỹ", "Thái", "Hải", "Minh", "Đức", "Hồng", "Kim", "Yên", "Cẩm",
    "Gia", "Hoàng", "Thượng", "Trung", "Lạc", "Sơn", "Hợp", "Đại", "Thuận", "Nghĩa", "Tiên", "Quang",
    "Định", "Triệu",
)
_PLACE_SECOND = (
    "An", "Bình", "Hòa", "Lợi", "Phú", "Thành", "Tiến", "Hưng", "Lộc", "Phong", "Sơn", "Thủy", "Lâm",
    "Điền", "Khánh", "Thịnh", "Tân", "Lạc", "Mỹ", "Trung", "Hải", "Đông", "Tây", "Nam", "Yên", "Long",
    "Phước", "Thắng", "Xuân", "Hiệp", "Quý", "Vinh", "Hà", "Giang", "Châu", "Cường", "Dương", "Hội",
    "Định", "Kiều",
)
_FAMOUS = (
    "Lê Lợi", "Nguyễn Trãi", "Trần Phú", "Lê Quý Đôn", "Nguyễn Du", "Quang Trung", "Chu Văn An",
    "Lý Thường Kiệt", "Nguyễn Huệ", "Phan Bội Châu", "Trần Hưng Đạo", "Lê Hồng Phong",
    "Nguyễn Thị Minh Khai", "Võ Thị Sáu", "Hoàng Văn Thụ", "Lương Thế Vinh", "Nguyễn Bỉnh Khiêm",
    "Hàm Nghi", "Phan Đình Phùng", "Tô Hiến Thành", "Ngô Quyền", "Đinh Tiên Hoàng", "Lê Thánh Tông",
    "Hai Bà Trưng", "Bà Triệu", "Lê Văn Tám", "Kim Đồng", "Nguyễn Văn Trỗi", "Trần Quốc Tuấn",
)
_PROVINCES = (  # (label, weight ~ population in millions)
    ("thành phố Hà Nội", 8.05), ("Thành phố Hồ Chí Minh", 8.99), ("thành phố Hải Phòng", 2.03),
    ("thành phố Đà Nẵng", 1.13), ("thành phố Cần Thơ", 1.24), ("tỉnh Hà Giang", 0.85),
    ("tỉnh Cao Bằng", 0.53), ("tỉnh Bắc Kạn", 0.31), ("tỉnh Tuyên Quang", 0.78),
    ("tỉnh Lào Cai", 0.73), ("tỉnh Điện Biên", 0.60), ("tỉnh Lai Châu", 0.46),
    ("tỉnh Sơn La", 1.25), ("tỉnh Yên Bái", 0.82), ("tỉnh Hòa Bình", 0.85),
    ("tỉnh Thái Nguyên", 1.29), ("tỉnh Lạng Sơn", 0.78), ("tỉnh Quảng Ninh", 1.32),
    ("tỉnh Bắc Giang", 1.80), ("tỉnh Phú Thọ", 1.46), ("tỉnh Vĩnh Phúc", 1.15),
    ("tỉnh Bắc Ninh", 1.37), ("tỉnh Hải Dương", 1.89), ("tỉnh Hưng Yên", 1.25),
    ("tỉnh Thái Bình", 1.86), ("tỉnh Hà Nam", 0.85), ("tỉnh Nam Định", 1.78),
    ("tỉnh Ninh Bình", 0.98), ("tỉnh Thanh Hóa", 3.64), ("tỉnh Nghệ An", 3.33),
    ("tỉnh Hà Tĩnh", 1.29), ("tỉnh Quảng Bình", 0.90), ("tỉnh Quảng Trị", 0.63),
    ("tỉnh Thừa Thiên Huế", 1.13), ("tỉnh Quảng Nam", 1.50), ("tỉnh Quảng Ngãi", 1.23),
    ("tỉnh Bình Định", 1.49), ("tỉnh Phú Yên", 0.96), ("tỉnh Khánh Hòa", 1.23),
    ("tỉnh Ninh Thuận", 0.59), ("tỉnh Bình Thuận", 1.23), ("tỉnh Kon Tum", 0.54),
    ("tỉnh Gia Lai", 1.51), ("tỉnh Đắk Lắk", 1.87), ("tỉnh Đắk Nông", 0.62),
    ("tỉnh Lâm Đồng", 1.30), ("tỉnh Bình Phước", 0.99), ("tỉnh Tây Ninh", 1.17),
    ("tỉnh Bình Dương", 2.46), ("tỉnh Đồng Nai", 3.10), ("tỉnh Bà Rịa - Vũng Tàu", 1.15),
    ("tỉnh Long An", 1.69), ("tỉnh Tiền Giang", 1.76), ("tỉnh Bến Tre", 1.29),
    ("tỉnh Trà Vinh", 1.01), ("tỉnh Vĩnh Long", 1.02), ("tỉnh Đồng Tháp", 1.60),
    ("tỉnh An Giang", 1.91), ("tỉnh Kiên Giang", 1.72), ("tỉnh Hậu Giang", 0.73),
    ("tỉnh Sóc Trăng", 1.20), ("tỉnh Bạc Liêu", 0.91), ("tỉnh Cà Mau", 1.19),
)
_COMMITTEE_WORD = {"huyện": "Huyện ủy", "quận": "Quận ủy", "thị xã": "Thị ủy", "thành phố": "Thành ủy"}

# --------------------------------------------------------------------------- names of units

_AGENCIES = (
    "Sở Tài chính", "Sở Tư pháp", "Sở Xây dựng", "Sở Giao thông vận tải", "Sở Y tế",
    "Sở Giáo dục và Đào tạo", "Sở Nội vụ", "Sở Kế hoạch và Đầu tư", "Sở Tài nguyên và Môi trường",
    "Sở Nông nghiệp và Phát triển nông thôn", "Sở Lao động - Thương binh và Xã hội",
    "Sở Văn hóa, Thể thao và Du lịch", "Sở Khoa học và Công nghệ", "Sở Thông tin và Truyền thông",
    "Sở Công Thương", "Sở Ngoại vụ", "Thanh tra tỉnh", "Văn phòng Ủy ban nhân dân tỉnh",
    "Văn phòng Đoàn đại biểu Quốc hội và Hội đồng nhân dân tỉnh", "Ban Dân tộc tỉnh",
    "Ban Quản lý Khu kinh tế và các Khu công nghiệp", "Cục Thuế tỉnh", "Cục Hải quan tỉnh",
    "Cục Thống kê tỉnh", "Kho bạc Nhà nước tỉnh", "Bảo hiểm xã hội tỉnh", "Tòa án nhân dân tỉnh",
    "Viện Kiểm sát nhân dân tỉnh", "Cục Thi hành án dân sự tỉnh", "Liên đoàn Lao động tỉnh",
    "Hội Nông dân tỉnh", "Hội Liên hiệp Phụ nữ tỉnh", "Tỉnh đoàn",
    "Ủy ban Mặt trận Tổ quốc Việt Nam tỉnh", "Báo tỉnh", "Đài Phát thanh và Truyền hình tỉnh",
    "Trường Chính trị tỉnh", "Liên minh Hợp tác xã tỉnh", "Hội Văn học Nghệ thuật tỉnh",
    "Ngân hàng Nhà nước Chi nhánh tỉnh", "Văn phòng Tỉnh ủy", "Ban Tổ chức Tỉnh ủy",
    "Ban Tuyên giáo Tỉnh ủy", "Ủy ban Kiểm tra Tỉnh ủy", "Ban Nội chính Tỉnh ủy",
    "Ban Quản lý dự án đầu tư xây dựng các công trình dân dụng và công nghiệp",
    "Ban Quản lý dự án đầu tư xây dựng các công trình giao thông", "Quỹ Đầu tư phát triển tỉnh",
    "Trung tâm Xúc tiến Đầu tư, Thương mại và Du lịch", "Trung tâm Kiểm soát bệnh tật tỉnh",
    "Trung tâm Phục vụ hành chính công tỉnh", "Cục Quản lý thị trường tỉnh", "Bưu điện tỉnh",
    "Văn phòng Đăng ký đất đai tỉnh", "Ban Quản lý các dự án nông nghiệp",
)
_AGENCY_TEMPLATES = (
    "Trung tâm {x}", "Chi cục {x}", "Ban Quản lý {x}",
)
_AGENCY_TOPICS = (
    "Khuyến nông", "Dịch vụ việc làm", "Công nghệ thông tin", "Quy hoạch", "Kiểm định xây dựng",
    "Đăng kiểm", "Bảo trợ xã hội", "Quan trắc môi trường", "Giống nông nghiệp", "Thủy sản",
    "Văn hóa - Nghệ thuật", "Huấn luyện và Thi đấu thể thao", "Lưu trữ lịch sử", "Trợ giúp pháp lý",
    "Đấu giá tài sản", "Phát triển quỹ đất", "Nước sạch và Vệ sinh môi trường nông thôn",
)
_AGENCY_UNITS = (
    "Văn phòng", "Phòng Tổ chức - Hành chính", "Phòng Kế hoạch - Tài chính", "Phòng Pháp chế",
    "Phòng Tổng hợp", "Thanh tra", "Phòng Tổ chức cán bộ", "Phòng Kiểm tra", "Phòng Chính sách",
    "Phòng Hành chính - Quản trị", "Phòng Công nghệ thông tin", "Phòng Quản lý dự án",
    "Phòng Nghiệp vụ", "Phòng Tuyên truyền", "Phòng Thẩm định", "Phòng Quản lý ngành",
    "Trung tâm Dịch vụ", "Trung tâm Thông tin", "Phòng Kế toán", "Phòng Hợp tác quốc tế",
)
_AGENCY_DIVISIONS = (
    "Chi cục Kiểm lâm", "Chi cục Thủy lợi", "Chi cục Chăn nuôi và Thú y", "Chi cục Bảo vệ môi trường",
    "Trung tâm Dịch vụ việc làm", "Trung tâm Kỹ thuật", "Chi cục Trồng trọt và Bảo vệ thực vật",
    "Văn phòng Đăng ký đất đai", "Khối Văn phòng", "Khối Nghiệp vụ", "Chi cục Quản lý chất lượng",
)
_INDUSTRIES = (
    "Cấp nước", "Môi trường Đô thị", "Xây dựng", "Vận tải", "Dược phẩm", "Xi măng", "Mía đường",
    "Cao su", "Lâm nghiệp", "Khai thác công trình thủy lợi", "Bia", "Xăng dầu", "May", "Giống cây trồng",
    "Sách và Thiết bị trường học", "Du lịch", "Cảng", "Khoáng sản", "Thương mại", "Tư vấn thiết kế",
    "Công trình giao thông", "Phát triển nhà", "In", "Thủy sản", "Chè", "Lương thực",
)
_ENTERPRISE_FORMS = (
    ("Công ty Cổ phần {x} {p}", 5), ("Công ty TNHH MTV {x} {p}", 3), ("Tổng Công ty {x} {p}", 1),
)
_ENTERPRISES = (
    "Công ty Điện lực tỉnh", "Viễn thông tỉnh", "Viettel tỉnh", "Công ty TNHH MTV Xổ số kiến thiết",
    "Công ty Xăng dầu tỉnh",
)
_ENTERPRISE_UNITS = (
    "Văn phòng Công ty", "Phòng Kỹ thuật", "Phòng Kinh doanh", "Phòng Tài chính - Kế toán",
    "Phòng Tổ chức - Hành chính", "Phòng Vật tư", "Phòng Kế hoạch - Đầu tư", "Phân xưởng {n}",
    "Xí nghiệp {p}", "Đội Xây lắp số {n}", "Chi nhánh {p}", "Nhà máy {p}", "Trạm {p}",
)
_ENTERPRISE_DIVISIONS = ("Xí nghiệp {p}", "Nhà máy {p}", "Chi nhánh {p}", "Công ty con {p}")
_BANKS = (
    "Ngân hàng TMCP Công Thương Việt Nam", "Ngân hàng Nông nghiệp và Phát triển Nông thôn Việt Nam",
    "Ngân hàng TMCP Ngoại thương Việt Nam", "Ngân hàng TMCP Đầu tư và Phát triển Việt Nam",
    "Ngân hàng Chính sách xã hội", "Ngân hàng Phát triển Việt Nam",
)
_BANK_UNITS = (
    "Phòng Giao dịch {p}", "Phòng Khách hàng doanh nghiệp", "Phòng Khách hàng cá nhân",
    "Phòng Kế toán - Ngân quỹ", "Phòng Tổng hợp", "Phòng Quản lý rủi ro", "Phòng Tổ chức - Hành chính",
)
_HOSPITALS = (
    "Bệnh viện Đa khoa tỉnh", "Bệnh viện Nhi", "Bệnh viện Phụ sản", "Bệnh viện Y dược cổ truyền",
    "Bệnh viện Phổi", "Bệnh viện Tâm thần", "Bệnh viện Mắt", "Bệnh viện Da liễu", "Bệnh viện Nội tiết",
    "Bệnh viện Ung bướu", "Bệnh viện Điều dưỡng - Phục hồi chức năng",
)
_HOSPITAL_UNITS = (
    "Khoa Nội", "Khoa Ngoại", "Khoa Sản", "Khoa Nhi", "Khoa Hồi sức cấp cứu", "Khoa Xét nghiệm",
    "Khoa Chẩn đoán hình ảnh", "Khoa Dược", "Phòng Kế hoạch tổng hợp", "Phòng Điều dưỡng",
    "Phòng Tổ chức cán bộ", "Khoa Truyền nhiễm", "Khoa Y học cổ truyền", "Khoa Khám bệnh",
    "Khoa Gây mê hồi sức", "Phòng Tài chính - Kế toán", "Khoa Kiểm soát nhiễm khuẩn",
)
_HOSPITAL_DIVISIONS = ("Khối Nội", "Khối Ngoại", "Khối Cận lâm sàng", "Khối Hành chính")
_COLLEGES = (
    "Trường Đại học {p}", "Trường Đại học {f}", "Trường Cao đẳng Y tế", "Trường Cao đẳng Nghề",
    "Trường Cao đẳng Sư phạm", "Trường Cao đẳng Văn hóa Nghệ thuật", "Trường Cao đẳng Nông nghiệp",
)
_COLLEGE_UNITS = (
    "Khoa Kinh tế", "Khoa Sư phạm", "Khoa Kỹ thuật - Công nghệ", "Khoa Ngoại ngữ",
    "Khoa Lý luận chính trị", "Khoa Nông - Lâm - Ngư", "Khoa Y dược", "Khoa Luật", "Phòng Đào tạo",
    "Phòng Tổ chức - Hành chính", "Phòng Công tác học sinh - sinh viên", "Sinh viên", "Thư viện",
)
_COLLEGE_DIVISIONS = ("Khoa Kinh tế", "Khoa Sư phạm", "Khoa Kỹ thuật - Công nghệ", "Khoa Y dược")
_SCHOOLS = (
    ("Trường THPT {f}", 3), ("Trường THPT {p}", 2), ("Trường THCS {p}", 4), ("Trường Tiểu học {p}", 4),
    ("Trường Mầm non {p}", 3), ("Trường Phổ thông Dân tộc nội trú {d}", 1),
    ("Trung tâm Giáo dục nghề nghiệp - Giáo dục thường xuyên {d}", 1),
)
_SCHOOL_UNITS = (
    "Tổ Toán - Tin", "Tổ Ngữ văn", "Tổ Khoa học tự nhiên", "Tổ Khoa học xã hội", "Tổ Ngoại ngữ",
    "Tổ Văn phòng",
)
_POLICE = (
    "Phòng Cảnh sát hình sự", "Phòng An ninh kinh tế", "Phòng An ninh chính trị nội bộ",
    "Phòng Cảnh sát giao thông", "Phòng Cảnh sát phòng cháy, chữa cháy và cứu nạn, cứu hộ",
    "Phòng Cảnh sát quản lý hành chính về trật tự xã hội", "Phòng Tham mưu", "Phòng Tổ chức cán bộ",
    "Phòng Hậu cần", "Trại Tạm giam", "Phòng Cảnh sát cơ động", "Phòng Cảnh sát kinh tế",
    "Phòng An ninh mạng và phòng, chống tội phạm sử dụng công nghệ cao", "Phòng Quản lý xuất nhập cảnh",
    "Phòng Cảnh sát điều tra tội phạm về ma túy", "Công an huyện {p}", "Công an thị xã {p}",
)
_POLICE_UNITS = (
    "Đội Điều tra tổng hợp", "Đội Cảnh sát giao thông - Trật tự", "Đội An ninh", "Đội Cảnh sát hình sự",
    "Đội Tham mưu", "Đội Cảnh sát kinh tế", "Đội Quản lý hành chính", "Đội Cảnh sát phòng cháy",
    "Công an xã {p}", "Công an phường {p}",
)
_MILITARY = (
    "Cơ quan Bộ Chỉ huy Quân sự tỉnh", "Ban Chỉ huy Quân sự huyện {p}", "Trung đoàn {n}", "Tiểu đoàn {n}",
    "Trường Quân sự tỉnh", "Đồn Biên phòng {p}",
)
_MILITARY_UNITS = (
    "Ban Tham mưu", "Ban Chính trị", "Ban Hậu cần - Kỹ thuật", "Đại đội {n}", "Cơ quan", "Trung đội {n}",
)
_MILITARY_DIVISIONS = ("Tiểu đoàn {n}", "Cơ quan Tham mưu", "Cơ quan Chính trị")
_DISTRICT_AGENCIES = (
    "Cơ quan {u}", "Cơ quan Ủy ban nhân dân {d}", "Cơ quan Mặt trận Tổ quốc và các đoàn thể {d}",
    "Phòng Giáo dục và Đào tạo {d}", "Chi cục Thuế {d}", "Kho bạc Nhà nước {d}",
    "Ngân hàng Chính sách xã hội {d}", "Tòa án nhân dân {d}", "Viện Kiểm sát nhân dân {d}",
    "Chi cục Thi hành án dân sự {d}", "Bảo hiểm xã hội {d}", "Hạt Kiểm lâm {d}",
    "Ban Quản lý dự án đầu tư xây dựng {d}", "Trung tâm Văn hóa - Thông tin và Thể thao {d}",
    "Điện lực {d}", "Trung tâm Phát triển quỹ đất {d}", "Chi cục Thống kê {d}", "Công an {d}",
    "Ban Chỉ huy Quân sự {d}",
)
_DISTRICT_UNITS = (
    "Văn phòng", "Phòng Nội vụ", "Phòng Tài chính - Kế hoạch", "Phòng Tư pháp",
    "Phòng Tài nguyên và Môi trường", "Phòng Kinh tế và Hạ tầng", "Phòng Nông nghiệp và Phát triển nông thôn",
    "Phòng Lao động - Thương binh và Xã hội", "Phòng Văn hóa và Thông tin", "Thanh tra", "Ban Tổ chức",
    "Ban Tuyên giáo", "Ủy ban Kiểm tra", "Phòng Y tế",
)
_COMMUNE_SERVICES = (
    "Cơ quan", "Quân sự", "Công an", "Trạm Y tế", "Trường Tiểu học {c}", "Trường Mầm non {c}",
    "Trường THCS {c}",
)
_CENTER_HEALTH = ("Trung tâm Y tế {d}",)

# Categories of base organizations: how to name one, its branches and its divisions (đảng bộ bộ phận).
_CATEGORY_UNITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "agency": (_AGENCY_UNITS, _AGENCY_DIVISIONS),
    "enterprise": (_ENTERPRISE_UNITS, _ENTERPRISE_DIVISIONS),
    "bank": (_BANK_UNITS, ()),
    "hospital": (_HOSPITAL_UNITS, _HOSPITAL_DIVISIONS),
    "college": (_COLLEGE_UNITS, _COLLEGE_DIVISIONS),
    "school": (_SCHOOL_UNITS, ()),
    "police": (_POLICE_UNITS, ()),
    "military": (_MILITARY_UNITS, _MILITARY_DIVISIONS),
    "district_agency": (_DISTRICT_UNITS, ()),
    "health_center": (_HOSPITAL_UNITS, ()),
    "commune": ((), ()),
    "ward": ((), ()),
}
# Mixes per upper unit: (categories for a đảng bộ cơ sở, categories for a chi bộ cơ sở).
_Mix = tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]
_MIXES: dict[str, _Mix] = {
    "khoi": (
        (("agency", 0.5), ("enterprise", 0.22), ("hospital", 0.1), ("college", 0.06), ("bank", 0.12)),
        (("agency", 0.45), ("enterprise", 0.25), ("school", 0.12), ("bank", 0.18)),
    ),
    "agencies": (
        (("agency", 0.65), ("hospital", 0.2), ("college", 0.15)),
        (("agency", 0.75), ("school", 0.25)),
    ),
    "enterprises": ((("enterprise", 0.75), ("bank", 0.25)), (("enterprise", 0.7), ("bank", 0.3))),
    "police": ((("police", 1.0),), (("police", 1.0),)),
    "military": ((("military", 1.0),), (("military", 1.0),)),
    "rural": (
        (("commune", 0.8), ("district_agency", 0.15), ("health_center", 0.05)),
        (("school", 0.65), ("district_agency", 0.35)),
    ),
    "urban": (
        (("ward", 0.72), ("district_agency", 0.22), ("health_center", 0.06)),
        (("school", 0.6), ("district_agency", 0.4)),
    ),
}

# --------------------------------------------------------------------------- the sct preset

_SCT_BRANCHES = (  # (name, email local part)
    ("Chi bộ Văn phòng 1", "cb-vp1"), ("Chi bộ Văn phòng 2", "cb-vp2"),
    ("Chi bộ Khuyến công", "cb-kc"), ("Chi bộ Quản lý Thương mại", "cb-qltm"),
    ("Chi bộ Thanh tra Sở", "cb-ttr"), ("Chi bộ Kế hoạch - Tài chính", "cb-khtc"),
    ("Chi bộ Quản lý Năng lượng", "cb-qlnl"), ("Chi bộ Quản lý Công nghiệp", "cb-qlcn"),
    ("Chi bộ Trung tâm Xúc tiến Thương mại", "cb-xttm"),
    ("Chi bộ Kỹ thuật An toàn - Môi trường", "cb-ktat"),
)


@dataclass(frozen=True)
class _Person:
    """A member fixed by name (the plan's committee members)."""

    full_name: str
    positions: tuple[str, ...]
    email: str


_SCT_PEOPLE: dict[int, tuple[_Person, ...]] = {  # branch index -> people
    0: (
        _Person("Trần Minh Cường", ("bi_thu", "dang_uy_vien"), "tranminhcuong@sct.kiemdiem.local"),
        _Person("Nguyễn Sỹ Chín", ("dang_uy_vien", "thu_truong"), "nguyensychin@sct.kiemdiem.local"),
    ),
    1: (_Person("Lê Xuân Tiến", ("dang_uy_vien", "pho_thu_truong"), "lexuantien@sct.kiemdiem.local"),),
    2: (_Person("Nguyễn Trọng Thức", ("bi_thu", "dang_uy_vien"), "nguyentrongthuc@sct.kiemdiem.local"),),
}


# --------------------------------------------------------------------------- helpers


def _split(total: int, weights: Sequence[float], minimum: int = 0) -> list[int]:
    """Split ``total`` into parts proportional to ``weights``, each at least ``minimum``, summing exactly."""
    rest = total - minimum * len(weights)
    if rest < 0:
        raise ValueError(f"cannot split {total} into {len(weights)} parts of at least {minimum}")
    scale = sum(weights)
    raw = [rest * w / scale for w in weights]
    parts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (parts[i] - raw[i], i))
    for i in order[: rest - sum(parts)]:
        parts[i] += 1
    return [minimum + p for p in parts]


def _random_parts(rng: random.Random, total: int, count: int, minimum: int) -> list[int]:
    parts = [minimum] * count
    for _ in range(total - minimum * count):
        parts[rng.randrange(count)] += 1
    return parts


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    point = rng.random() * sum(w for _, w in options)
    for name, weight in options:
        point -= weight
        if point < 0:
            return name
    return options[-1][0]


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in text if unicodedata.category(ch) != "Mn" and ch.isalnum()).lower()


class _Quota:
    """Hands out ``total`` over ``slots`` draws, each within [low, high], hitting the total exactly."""

    def __init__(self, total: int, slots: int, low: int, high: int) -> None:
        if not low * slots <= total <= high * slots:
            raise ValueError(f"{total} does not fit {slots} slots of {low}..{high}")
        self.remaining, self.slots, self.low, self.high = total, slots, low, high

    def bounds(self) -> tuple[int, int]:
        rest = self.slots - 1
        return (max(self.low, self.remaining - self.high * rest),
                min(self.high, self.remaining - self.low * rest))

    def mean(self) -> float:
        return self.remaining / self.slots

    def take(self, wanted: int) -> int:
        low, high = self.bounds()
        value = min(max(wanted, low), high)
        self.remaining -= value
        self.slots -= 1
        return value


@dataclass
class _Area:
    """Where base organizations sit: the province and, below a district committee, the district."""

    province: str
    district: str = ""
    committee: str = ""


@dataclass
class _Base:
    """Naming context of one base organization while its branches are written."""

    category: str
    place: str
    used: set[str] = field(default_factory=set)
    counter: int = 0


# --------------------------------------------------------------------------- the writer


class _Synth:
    def __init__(self, rng: random.Random, units, members, campaign_year: int, domain: str,
                 reserved_names: frozenset[str] = frozenset()) -> None:
        self.rng = rng
        self.units = units
        self.members = members
        self.domain = domain
        self.reserved = reserved_names
        self.reference = dt.date(campaign_year, 12, 1).toordinal()
        self.unit_count = self.member_count = self.branch_count = 0
        self.recent: deque[str] = deque(maxlen=_RECENT_BRANCHES)
        self.slugs: dict[str, str] = {}
        self.places = [f"{a} {b}" for a in _PLACE_FIRST for b in _PLACE_SECOND if a != b]

    # ---- units

    def unit(self, code: str, name: str, kind: str, parent: str, emails: Sequence[str] = ()) -> None:
        if not emails:
            local = code.lower()
            emails = [f"{local}@{self.domain}"]
            if self.rng.random() < 0.25:
                emails.append(f"vp.{local}@{self.domain}")
        self.units.writerow((code, name, kind, parent, ";".join(emails)))
        self.unit_count += 1
        if kind in BRANCH_KINDS:
            self.branch_count += 1

    def place(self, used: set[str]) -> str:
        for _ in range(20):
            name = self.rng.choice(self.places)
            if name not in used:
                used.add(name)
                return name
        return self.rng.choice(self.places)

    def fill(self, template: str, area: _Area, place: str = "") -> str:
        rng = self.rng
        return template.format(
            p=place or rng.choice(self.places), f=rng.choice(_FAMOUS), n=rng.randint(1, 12),
            d=area.district or area.province, u=area.committee or "Tỉnh ủy", c=place,
            x=rng.choice(_INDUSTRIES),
        )

    def base_name(self, category: str, area: _Area, place: str) -> str:
        rng = self.rng
        if category == "agency":
            if rng.random() < 0.8:
                return rng.choice(_AGENCIES)
            return rng.choice(_AGENCY_TEMPLATES).format(x=rng.choice(_AGENCY_TOPICS))
        if category == "enterprise":
            if rng.random() < 0.12:
                return rng.choice(_ENTERPRISES)
            form = _weighted(rng, _ENTERPRISE_FORMS)
            return form.format(x=rng.choice(_INDUSTRIES), p=place)
        if category == "bank":
            return f"{rng.choice(_BANKS)} - Chi nhánh {place}"
        if category == "hospital":
            if rng.random() < 0.7:
                return rng.choice(_HOSPITALS)
            return f"Bệnh viện Đa khoa khu vực {place}"
        if category == "college":
            return self.fill(rng.choice(_COLLEGES), area, place)
        if category == "school":
            return self.fill(_weighted(rng, _SCHOOLS), area, place)
        if category == "police":
            return self.fill(rng.choice(_POLICE), area, place)
        if category == "military":
            return self.fill(rng.choice(_MILITARY), area, place)
        if category == "district_agency":
            return self.fill(rng.choice(_DISTRICT_AGENCIES), area, place)
        if category == "health_center":
            return self.fill(rng.choice(_CENTER_HEALTH), area, place)
        if category == "ward":
            return f"phường {place}"
        return f"thị trấn {place}" if rng.random() < 0.08 else f"xã {place}"

    def unique(self, candidate: str, used: set[str]) -> str:
        name, number = candidate, 2
        while name in used:
            name = f"{candidate} số {number}"
            number += 1
        used.add(name)
        return name

    def branch_name(self, base: _Base, area: _Area) -> str:
        rng = self.rng
        base.counter += 1
        pool = _CATEGORY_UNITS[base.category][0]
        if base.category == "commune":
            if rng.random() < 0.25:
                candidate = rng.choice(_COMMUNE_SERVICES).format(c=base.place)
            else:
                candidate = f"thôn {self.place(base.used)}"
        elif base.category == "ward":
            candidate = rng.choice(("khu phố {n}", "tổ dân phố số {n}")).format(n=rng.randint(1, 30))
        else:
            candidate = self.fill(rng.choice(pool), area)
            if candidate in base.used:
                candidate = f"số {base.counter}"
        return "Chi bộ " + self.unique(candidate, base.used)

    # ---- members

    def full_name(self) -> tuple[str, str]:
        """Return (full name, email local part without the number)."""
        rng = self.rng
        family = _FAMILY_NAMES[bisect.bisect_right(_FAMILY_CUM, rng.random() * _FAMILY_CUM[-1])]
        if rng.random() < 0.42:
            middle = ["Thị"] if rng.random() < 0.6 else [rng.choice(_FEMALE_MIDDLE)]
            if middle[0] == "Thị" and rng.random() < 0.2:
                middle.append(rng.choice(_FEMALE_MIDDLE))
            given = rng.choice(_FEMALE_GIVEN)
        else:
            middle = ["Văn"] if rng.random() < 0.35 else [rng.choice(_MALE_MIDDLE)]
            given = rng.choice(_MALE_GIVEN)
        if given == middle[-1]:
            middle[-1] = "Thị" if middle[-1] in _FEMALE_MIDDLE else "Văn"
        parts = [family, *middle]
        slugs = self.slugs
        for part in (given, *parts):
            if part not in slugs:
                slugs[part] = _ascii(part)
        local = slugs[given] + "".join(slugs[p][0] for p in parts)
        return " ".join((*parts, given)), local

    def status(self) -> str:
        point = self.rng.random()
        if point < 0.935:
            return "active"
        if point < 0.975:
            return "probationary"
        if point < 0.995:
            return "exempt"
        return "suspended"

    def joined(self, status: str) -> int:
        rng, ref = self.rng, self.reference
        if status == "probationary":  # admitted within the last year; about a third under 6 months
            if rng.random() < 0.35:
                return rng.randint(ref - 181, ref - 7)
            return rng.randint(ref - 364, ref - 182)
        if status == "exempt":  # mostly veterans
            return rng.randint(_EARLIEST_JOIN, _VETERAN_JOIN[1])
        span = ref - 366 - _EARLIEST_JOIN
        return _EARLIEST_JOIN + int(span * (1.0 - rng.random() ** 1.4))

    def branch_members(self, branch: str, count: int, *, under_committee: bool, head_here: bool,
                       deputy_share: float, people: Sequence[_Person] = ()) -> None:
        """Write ``count`` members of ``branch``; ``people`` are fixed members listed first."""
        rng = self.rng
        rows: list[list] = []  # [name, local, status, joined, positions, email]
        for person in people:
            joined = self.rng.randint(_VETERAN_JOIN[0], _VETERAN_JOIN[1])
            rows.append([person.full_name, "", "active", joined, list(person.positions), person.email])
        while len(rows) < count:
            name, local = self.full_name()
            if name in self.reserved:
                continue
            status = self.status()
            rows.append([name, local, status, self.joined(status), [], ""])
        if not any(r[2] == "active" for r in rows):
            rows[-1][2], rows[-1][3] = "active", self.joined("active")
        taken = {p for r in rows for p in r[4]}

        def free() -> list | None:
            options = [r for r in rows if r[2] == "active" and not r[4]]
            return rng.choice(options) if options else None

        if "bi_thu" not in taken:
            secretary = free() or rng.choice([r for r in rows if r[2] == "active"])
            secretary[4].append("bi_thu")
            if under_committee and rng.random() < 0.45:
                secretary[4].append("dang_uy_vien")
        with_committee = count >= 9  # a chi ủy is elected from nine official members up
        if "pho_bi_thu" not in taken and count >= 4 and rng.random() < (0.85 if with_committee else 0.4):
            if (row := free()) is not None:
                row[4].append("pho_bi_thu")
        if with_committee:
            for _ in range(rng.randint(1, 3 if count >= 15 else 2)):
                if (row := free()) is not None:
                    row[4].append("chi_uy_vien")
        if head_here and "thu_truong" not in taken:
            leaders = [r for r in rows if "bi_thu" in r[4]]
            row = leaders[0] if leaders and rng.random() < 0.5 else free()
            if row is not None:
                row[4].append("thu_truong")
                if under_committee and "dang_uy_vien" not in row[4]:
                    row[4].append("dang_uy_vien")
        deputies = rng.randint(1, 2) if head_here else int(rng.random() < deputy_share)
        for _ in range(deputies):
            if (row := free()) is not None:
                row[4].append("pho_thu_truong")

        recent = self.recent
        out = []
        for name, local, status, joined, positions, email in rows:
            self.member_count += 1
            number = self.member_count
            if not email and (positions or rng.random() >= _NO_EMAIL_SHARE):
                email = f"{local}{number}@{self.domain}"
            temporary = ""
            if (status in ("active", "probationary") and not positions and recent
                    and rng.random() < _TEMPORARY_SHARE):
                temporary = rng.choice(recent)
            positions.sort(key=_POSITION_ORDER.__getitem__)
            out.append((f"DV{number:07d}", name, branch, email, dt.date.fromordinal(joined).isoformat(),
                        status, temporary, ";".join(positions)))
        self.members.writerows(out)
        recent.append(branch)

    # ---- base organizations

    def bases(self, parent: str, area: _Area, mix: str, bases: int, branches: int, members: int,
              *, max_branches: int, single_share: float, max_members: int) -> None:
        """Write ``bases`` base organizations under ``parent`` holding exactly the given totals."""
        rng = self.rng
        large, small = _MIXES[mix]
        branch_quota = _Quota(branches, bases, 1, max_branches)
        member_quota = _Quota(members, branches, _MIN_MEMBERS, max_members)
        used: set[str] = set()
        places: set[str] = set()
        width = max(3, len(str(bases)))
        with_division = False  # the first eligible đảng bộ always gets a đảng bộ bộ phận tier
        for index in range(1, bases + 1):
            low, high = branch_quota.bounds()
            if low <= 1 and (high < 2 or rng.random() < single_share):
                size = branch_quota.take(1)
            else:
                mean = branch_quota.mean()
                desired = max(2.0, (mean - single_share) / (1.0 - single_share))
                size = branch_quota.take(max(2, round(desired * rng.uniform(0.5, 1.5))))
            options = large if size > 1 else small
            category = _weighted(rng, options)
            place = self.place(places)
            prefix = "Chi bộ " if size == 1 else "Đảng bộ "
            for attempt in range(16):  # prefer another real name to a "số 2" copy
                if attempt == 8:  # e.g. the district's one health centre is taken
                    category = options[0][0]
                candidate = prefix + self.base_name(category, area, place)
                if candidate not in used:
                    break
            name = self.unique(candidate, used)
            code = f"{parent}-CS{index:0{width}d}"
            if size == 1:
                self.unit(code, name, "chi_bo_co_so", parent)
                self.branch_members(code, self.draw_members(member_quota), under_committee=False,
                                    head_here=True, deputy_share=0.0)
                continue
            self.unit(code, name, "dang_bo_co_so", parent)
            base = _Base(category, place, used={place})
            divisions = _CATEGORY_UNITS[category][1]
            groups: list[int] = []
            if divisions and size >= 5 and (not with_division or rng.random() < 0.35):
                with_division = True
                group_count = rng.randint(1, min(4, (size - 1) // 2))
                direct = rng.randint(1, size - 2 * group_count)
                groups = _random_parts(rng, size - direct, group_count, 2)
            else:
                direct = size
            number = 0
            for _ in range(direct):
                number += 1
                self._branch(f"{code}-CB{number:02d}", code, base, area, member_quota, number == 1)
            division_names: set[str] = set()
            for group, group_size in enumerate(groups, start=1):
                division = f"{code}-BP{group}"
                label = self.unique(self.fill(rng.choice(divisions), area), division_names)
                self.unit(division, f"Đảng bộ bộ phận {label}", "dang_bo_bo_phan", code)
                for _ in range(group_size):
                    number += 1
                    self._branch(f"{division}-CB{number:02d}", division, base, area, member_quota, False)

    def _branch(self, code: str, parent: str, base: _Base, area: _Area, quota: _Quota, first: bool) -> None:
        self.unit(code, self.branch_name(base, area), "chi_bo_truc_thuoc", parent)
        self.branch_members(code, self.draw_members(quota), under_committee=True, head_here=first,
                            deputy_share=0.15)

    def draw_members(self, quota: _Quota) -> int:
        sigma = 0.55
        return quota.take(round(quota.mean() * self.rng.lognormvariate(-sigma * sigma / 2, sigma)))


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    domain: str
    bases: tuple[int, int]
    branches: tuple[int, int]
    members: tuple[int, int]
    build: Callable[[_Synth, int, int, int], None]


def _build_sct(synth: _Synth, bases: int, branches: int, members: int) -> None:
    synth.unit("SCT", "Đảng bộ Sở Công Thương", "dang_bo_co_so", "",
               [f"danguy@{synth.domain}", f"vanphong@{synth.domain}"])
    quota = _Quota(members, len(_SCT_BRANCHES), 8, 25)
    for index, (name, local) in enumerate(_SCT_BRANCHES):
        code = f"SCT-CB{index + 1:02d}"
        synth.unit(code, name, "chi_bo_truc_thuoc", "SCT", [f"{local}@{synth.domain}"])
        synth.branch_members(code, synth.draw_members(quota), under_committee=True, head_here=False,
                             deputy_share=0.12, people=_SCT_PEOPLE.get(index, ()))


# The one Khối among the seed plans is Hà Tĩnh's (KH-DUK-HT-2022): its tree is named after that
# province, so that a replay of that plan does not read "Đảng bộ Khối … tỉnh Bắc Kạn".
KHOI_PROVINCE = "tỉnh Hà Tĩnh"


def _build_khoi(synth: _Synth, bases: int, branches: int, members: int) -> None:
    province = KHOI_PROVINCE
    synth.unit("DBK", f"Đảng bộ Khối các cơ quan và doanh nghiệp {province}", "cap_tren_co_so", "")
    synth.bases("DBK", _Area(province), "khoi", bases, branches, members,
                max_branches=16, single_share=0.35, max_members=150)


def _tiers(synth: _Synth, province: str, bases: int) -> list[tuple[str, str, str, _Area, float]]:
    """Upper units under a province: (code suffix, name, mix, area, weight)."""
    rng = synth.rng
    count = min(45, max(1, round(bases / 50)))
    tiers: list[tuple[str, str, str, _Area, float]] = []
    area = _Area(province)
    if count >= 6:
        tiers += [
            ("KCQ", f"Đảng bộ Khối các cơ quan {province}", "agencies", area, 1.6),
            ("KDN", f"Đảng bộ Khối Doanh nghiệp {province}", "enterprises", area, 0.8),
            ("CA", f"Đảng bộ Công an {province}", "police", area, 0.7),
            ("QS", f"Đảng bộ Quân sự {province}", "military", area, 0.5),
        ]
    city = province.lower().startswith("thành phố")
    towns = rng.randint(0, 2)
    used: set[str] = set()
    for index in range(1, count - len(tiers) + 1):
        if city:
            word = "quận" if index <= (count - len(tiers)) * 0.6 else "huyện"
        else:
            word = "thành phố" if index == 1 else "thị xã" if index <= 1 + towns else "huyện"
        district = f"{word} {synth.place(used)}"
        mix = "rural" if word == "huyện" else "urban"
        weight = 1.6 if index == 1 else rng.uniform(0.6, 1.5)
        tiers.append((f"H{index:02d}", f"Đảng bộ {district}", mix,
                      _Area(province, district, _COMMITTEE_WORD[word]), weight))
    return tiers


def _province_body(synth: _Synth, code: str, province: str, bases: int, branches: int, members: int,
                   *, max_branches: int, single_share: float, max_members: int) -> None:
    tiers = _tiers(synth, province, bases)
    base_counts = _split(bases, [t[4] for t in tiers], 1)
    branch_counts = [b + e for b, e in zip(base_counts, _split(branches - bases, base_counts))]
    member_counts = [_MIN_MEMBERS * b + e for b, e in
                     zip(branch_counts, _split(members - _MIN_MEMBERS * branches, branch_counts))]
    for (suffix, name, mix, area, _), n_bases, n_branches, n_members in zip(
            tiers, base_counts, branch_counts, member_counts):
        tier_code = f"{code}-{suffix}"
        synth.unit(tier_code, name, "cap_tren_co_so", code)
        synth.bases(tier_code, area, mix, n_bases, n_branches, n_members, max_branches=max_branches,
                    single_share=single_share, max_members=max_members)


def _build_province(synth: _Synth, bases: int, branches: int, members: int) -> None:
    province = synth.rng.choice(_PROVINCES)[0]
    synth.unit("TINH", f"Đảng bộ {province}", "cap_tren_co_so", "")
    _province_body(synth, "TINH", province, bases, branches, members,
                   max_branches=30, single_share=0.35, max_members=250)


def _build_nation(synth: _Synth, bases: int, branches: int, members: int) -> None:
    synth.unit("VN", "Đảng Cộng sản Việt Nam", "cap_tren_co_so", "")
    weights = [w for _, w in _PROVINCES]
    base_counts = _split(max(bases, len(weights)), weights, 1)
    branch_counts = [b + e for b, e in zip(base_counts, _split(max(branches - sum(base_counts), 0),
                                                                 base_counts))]
    total_branches = sum(branch_counts)
    member_counts = [_MIN_MEMBERS * b + e for b, e in zip(
        branch_counts, _split(max(members - _MIN_MEMBERS * total_branches, 0), branch_counts))]
    for index, ((province, _), n_bases, n_branches, n_members) in enumerate(
            zip(_PROVINCES, base_counts, branch_counts, member_counts), start=1):
        code = f"VN-T{index:02d}"
        synth.unit(code, f"Đảng bộ {province}", "cap_tren_co_so", "VN")
        _province_body(synth, code, province, n_bases, n_branches, n_members,
                       max_branches=40, single_share=0.3, max_members=300)


PRESETS: dict[str, Preset] = {
    "sct": Preset("sct", "Đảng bộ Sở Công Thương (Kế hoạch 187-KH/ĐU)", "sct.kiemdiem.local",
                  (1, 1), (10, 10), (140, 160), _build_sct),
    "khoi": Preset("khoi", "Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh", "khoi.kiemdiem.local",
                   (90, 130), (270, 400), (4_000, 7_000), _build_khoi),
    "province": Preset("province", "Đảng bộ một tỉnh", "tinh.kiemdiem.local",
                       (950, 1_050), (2_850, 3_150), (85_500, 94_500), _build_province),
    "nation": Preset("nation", "Toàn Đảng: 63 tỉnh, thành phố", "vn.kiemdiem.local",
                     (51_500, 52_500), (247_500, 252_500), (5_550_000, 5_650_000), _build_nation),
}


def _targets(rng: random.Random, preset: Preset, scale: float) -> tuple[int, int, int]:
    def draw(bounds: tuple[int, int]) -> int:
        low, high = bounds
        return max(1, round(rng.randint(low, high) * scale))

    bases = draw(preset.bases)
    branches = max(bases, draw(preset.branches))
    members = max(_MIN_MEMBERS * branches, draw(preset.members))
    return bases, branches, members


def generate(preset: str, seed: int, out_dir: Path, *, campaign_year: int = 2023,
             _scale: float = 1.0) -> GeneratedFiles:
    """Write ``units.csv`` and ``members.csv`` for ``preset`` into ``out_dir`` (each atomically).

    ``_scale`` shrinks the khoi/province/nation sizes (tests, benchmarks); sct ignores it.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (choose one of {', '.join(PRESETS)})")
    spec = PRESETS[preset]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    bases, branches, members = _targets(rng, spec, 1.0 if preset == "sct" else _scale)
    reserved = frozenset(p.full_name for people in _SCT_PEOPLE.values() for p in people)
    targets = {"units": out_dir / "units.csv", "members": out_dir / "members.csv"}
    temporaries: dict[str, Path] = {}
    try:
        with ExitStack() as stack:
            writers = {}
            for stem in targets:
                fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{stem}.", suffix=".csv.tmp")
                temporaries[stem] = Path(tmp)
                handle = stack.enter_context(
                    os.fdopen(fd, "w", encoding="utf-8", newline="", buffering=1 << 20))
                writers[stem] = csv.writer(handle, lineterminator="\n")
            writers["units"].writerow(UNIT_COLUMNS)
            writers["members"].writerow(MEMBER_COLUMNS)
            synth = _Synth(rng, writers["units"], writers["members"], campaign_year, spec.domain,
                           reserved if preset == "sct" else frozenset())
            spec.build(synth, bases, branches, members)
        for stem, path in targets.items():
            os.chmod(temporaries[stem], 0o644)  # mkstemp makes 0600
            os.replace(temporaries[stem], path)
    except BaseException:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)
        raise
    return GeneratedFiles(targets["units"], targets["members"], synth.unit_count, synth.member_count,
                          synth.branch_count)
